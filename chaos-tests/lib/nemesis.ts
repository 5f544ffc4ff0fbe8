/**
 * Nemeses: faults with a start and a heal. Network faults act on the Toxiproxy proxies of the directed peer
 * links (and client ports); process faults act on the node processes. Every random choice comes from the
 * run's seeded Rng, so a seed replays the same schedule (the timing of the system under test still varies).
 */
import type { Proxy as ToxiProxy } from 'toxiproxy-node-client';
import type { Rng } from '../../src/util/random.js';
import type { ChaosCluster } from './cluster.js';

export interface Ctx {
  cluster: ChaosCluster;
  rng: Rng;
  log: (msg: string) => void;
}

/** A started fault: what it did, the shards it aimed at, and how to undo it. */
export interface ActiveFault {
  detail: string;
  shards?: number[];
  /** The fault began when start() was called (a rolling restart), not when it resolved. */
  fromInvoke?: boolean;
  heal(): Promise<void>;
}

export interface Nemesis {
  name: string;
  /** Why it cannot run here (then the schedule records it as skipped). */
  unsupported?: string;
  start(ctx: Ctx): Promise<ActiveFault>;
}

async function setEnabled(proxies: readonly ToxiProxy[], enabled: boolean): Promise<void> {
  await Promise.all(proxies.map((p) => p.update({ enabled, listen: p.listen, upstream: p.upstream })));
}

let toxicSeq = 0;

/** Fisher-Yates with the run's generator. */
export function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** Adds the same toxic to both streams of every proxy; returns the undo. */
async function addToxic<T>(
  proxies: readonly ToxiProxy[],
  type: 'latency' | 'bandwidth' | 'timeout' | 'reset_peer',
  attributes: T,
): Promise<() => Promise<void>> {
  const added = await Promise.all(
    proxies.flatMap((p) =>
      (['upstream', 'downstream'] as const).map((stream) =>
        p.addToxic<T>({ name: `${type}-${stream}-${++toxicSeq}`, type, stream, toxicity: 1, attributes }),
      ),
    ),
  );
  return async () => {
    await Promise.all(added.map((t) => t.remove()));
  };
}

/** Links crossing between two groups of nodes (both directions). */
function crossing(c: ChaosCluster, left: readonly string[], right: readonly string[]): ToxiProxy[] {
  return left.flatMap((a) => right.flatMap((b) => [c.link(a, b), c.link(b, a)]));
}

async function leaderOfRandomShard(ctx: Ctx): Promise<{ shard: number; leader: string } | undefined> {
  const leaders = await ctx.cluster.leaders();
  if (leaders.size === 0) return undefined;
  const shard = ctx.rng.pick([...leaders.keys()].sort((a, b) => a - b));
  return { shard, leader: leaders.get(shard)! };
}

const isolate = async (c: ChaosCluster, id: string): Promise<() => Promise<void>> => {
  const links = c.linksOf(id);
  await setEnabled(links, false);
  return () => setEnabled(links, true);
};

export const NEMESES: Nemesis[] = [
  {
    name: 'isolate-node',
    async start({ cluster, rng }) {
      const id = rng.pick(cluster.ids);
      return { detail: `peer links of ${id} refused (proxies disabled)`, heal: await isolate(cluster, id) };
    },
  },
  {
    name: 'isolate-leader',
    async start(ctx) {
      const l = await leaderOfRandomShard(ctx);
      const id = l?.leader ?? ctx.rng.pick(ctx.cluster.ids);
      const shards = l === undefined ? [] : [l.shard];
      return {
        detail: `leader ${id} of shard ${l?.shard ?? '?'} isolated`,
        shards,
        heal: await isolate(ctx.cluster, id),
      };
    },
  },
  {
    name: 'split-majority-minority',
    async start({ cluster, rng }) {
      const ids = shuffle(rng, [...cluster.ids]);
      const minority = ids.slice(0, Math.floor((ids.length - 1) / 2));
      const majority = ids.slice(minority.length);
      const links = crossing(cluster, minority, majority);
      await setEnabled(links, false);
      return {
        detail: `partition [${minority.join(',')}] | [${majority.join(',')}]`,
        heal: () => setEnabled(links, true),
      };
    },
  },
  {
    name: 'one-way-partition',
    async start({ cluster, rng }) {
      // The current leader of a shard stops reaching one follower, but still hears from it.
      const from = rng.pick(cluster.ids);
      const to = rng.pick(cluster.ids.filter((x) => x !== from));
      const link = cluster.link(from, to);
      await setEnabled([link], false);
      return {
        detail: `${from} -> ${to} dropped (the other way works)`,
        heal: () => setEnabled([link], true),
      };
    },
  },
  {
    name: 'latency-jitter',
    async start({ cluster, rng }) {
      const latency = rng.int(50, 200);
      const jitter = Math.floor(latency / 2);
      const undo = await addToxic(cluster.allLinks(), 'latency', { latency, jitter });
      return { detail: `every peer link ${latency}±${jitter} ms each way`, heal: undo };
    },
  },
  {
    name: 'bandwidth-cap',
    async start({ cluster, rng }) {
      const rate = rng.pick([8, 16, 32]);
      const undo = await addToxic(cluster.allLinks(), 'bandwidth', { rate });
      return { detail: `every peer link capped at ${rate} KB/s`, heal: undo };
    },
  },
  {
    name: 'blackhole-node',
    async start({ cluster, rng }) {
      const id = rng.pick(cluster.ids);
      // timeout 0: data is swallowed and the connection stays open (no error reaches gRPC until keepalive).
      const undo = await addToxic(cluster.linksOf(id), 'timeout', { timeout: 0 });
      return { detail: `peer links of ${id} blackholed (timeout toxic)`, heal: undo };
    },
  },
  {
    name: 'refuse-clients',
    async start({ cluster, rng }) {
      const id = rng.pick(cluster.ids);
      const p = cluster.clientProxy(id);
      await setEnabled([p], false);
      return { detail: `client port of ${id} refuses connections`, heal: () => setEnabled([p], true) };
    },
  },
  {
    name: 'reset-peer',
    async start({ cluster, rng }) {
      const id = rng.pick(cluster.ids);
      const undo = await addToxic(cluster.linksOf(id), 'reset_peer', { timeout: rng.int(100, 500) });
      return { detail: `peer connections of ${id} reset (TCP RST)`, heal: undo };
    },
  },
  {
    name: 'kill-restart',
    async start({ cluster, rng }) {
      const id = rng.pick(cluster.ids);
      await cluster.stop(id, 'SIGKILL');
      return {
        detail: `kill -9 ${id}, restart on heal`,
        async heal() {
          cluster.start(id);
          await cluster.waitReady(id);
        },
      };
    },
  },
  {
    name: 'kill-leader',
    async start(ctx) {
      const l = await leaderOfRandomShard(ctx);
      const id = l?.leader ?? ctx.rng.pick(ctx.cluster.ids);
      await ctx.cluster.stop(id, 'SIGKILL');
      return {
        detail: `kill -9 ${id} (leader of shard ${l?.shard ?? '?'}), restart on heal`,
        shards: l === undefined ? [] : [l.shard],
        async heal() {
          ctx.cluster.start(id);
          await ctx.cluster.waitReady(id);
        },
      };
    },
  },
  {
    name: 'pause',
    async start({ cluster, rng }) {
      const id = rng.pick(cluster.ids);
      cluster.signal(id, 'SIGSTOP');
      return {
        detail: `SIGSTOP ${id}, SIGCONT on heal`,
        async heal() {
          cluster.signal(id, 'SIGCONT');
        },
      };
    },
  },
  {
    name: 'rolling-restart',
    async start({ cluster }) {
      // The whole restart happens in start(): one node at a time, SIGTERM (graceful), wait until ready.
      for (const id of cluster.ids) {
        await cluster.stop(id, 'SIGTERM');
        cluster.start(id);
        await cluster.waitReady(id);
      }
      return {
        detail: `SIGTERM + restart ${cluster.ids.join(', ')} in turn`,
        fromInvoke: true,
        heal: async () => undefined,
      };
    },
  },
  {
    name: 'leader-transfer-storm',
    async start(ctx) {
      // Until healed: every ~200 ms a random shard's leader is asked (TransferLeader admin RPC) to hand its
      // leadership to the most caught-up other replica.
      let stopped = false;
      let transfers = 0;
      const loop = (async () => {
        while (!stopped) {
          const l = await leaderOfRandomShard(ctx).catch(() => undefined);
          if (l !== undefined) {
            const c = await ctx.cluster.directClient(l.leader).catch(() => undefined);
            const ok = await c?.transferLeader(l.shard, '', { deadlineMs: 2000 }).then(
              () => true,
              () => false,
            );
            if (ok) transfers++;
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      return {
        detail: 'leader transfers of random shards every ~200 ms',
        async heal() {
          stopped = true;
          await loop;
          ctx.log(`leader-transfer-storm: ${transfers} transfers`);
        },
      };
    },
  },
];

export function nemesisByName(name: string): Nemesis {
  const n = NEMESES.find((x) => x.name === name);
  if (n === undefined)
    throw new Error(`unknown nemesis ${name}; known: ${NEMESES.map((x) => x.name).join(', ')}`);
  return n;
}

export interface Step {
  nemesis: string;
  /** How long the fault stays on, then how long the cluster runs healed before the next step (ms). */
  faultMs: number;
  quietMs: number;
}

/**
 * The schedule: smoke runs every supported nemesis once (in a seeded order) with short faults; long mode
 * draws nemeses at random (seeded) until `durationMs` is filled.
 */
export function schedule(mode: 'smoke' | 'long', rng: Rng, durationMs: number): Step[] {
  const supported = NEMESES.filter((n) => n.unsupported === undefined).map((n) => n.name);
  if (mode === 'smoke') {
    return shuffle(rng, [...supported]).map((nemesis) => ({ nemesis, faultMs: 3000, quietMs: 2000 }));
  }
  const out: Step[] = [];
  let total = 0;
  while (total < durationMs) {
    const s: Step = {
      nemesis: rng.pick(supported),
      faultMs: rng.int(2000, 15_000),
      quietMs: rng.int(2000, 8000),
    };
    out.push(s);
    total += s.faultMs + s.quietMs;
  }
  return out;
}
