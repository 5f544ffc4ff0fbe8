import { afterEach, describe, expect, it } from 'vitest';
import { RaftDriver } from '../../src/raft/driver.js';
import { MemoryLogStorage } from '../../src/raft/storage-memory.js';
import type { PeerTransport } from '../../src/transport/peer.js';
import { Rng } from '../../src/util/random.js';
import { RecordingStateMachine } from '../raft/fixtures/driver-cluster.js';
import { startMesh, waitFor } from './helpers.js';

const enc = new TextEncoder();
const SEED = Number(process.env.TIDEMARK_SEED ?? 7);

interface Replica {
  node: string;
  shard: number;
  driver: RaftDriver;
  sm: RecordingStateMachine;
}

let transports: PeerTransport[] = [];
let replicas: Replica[] = [];
afterEach(async () => {
  for (const r of replicas) await r.driver.stop();
  await Promise.all(transports.map((t) => t.close()));
  replicas = [];
  transports = [];
});

describe('RaftDrivers over PeerTransport (3 nodes x 3 shards, real gRPC on loopback)', () => {
  it(`elects a leader per shard and commits proposals on every replica (seed ${SEED}; TIDEMARK_SEED=${SEED} to replay)`, async () => {
    const ids = ['n1', 'n2', 'n3'];
    const shards = [0, 1, 2];
    transports = await startMesh(ids, { backoffInitialMs: 20, backoffMaxMs: 200 }, SEED);
    const rng = new Rng(SEED);
    for (const t of transports) {
      for (const shard of shards) {
        const sm = new RecordingStateMachine();
        const driver = new RaftDriver({
          id: t.id,
          storage: new MemoryLogStorage({ conf: { voters: ids, learners: [] } }),
          transport: t.shard(shard),
          stateMachine: sm,
          tickMs: 10,
          electionTick: 10,
          heartbeatTick: 2,
          random: rng.fork().fn(),
        });
        await driver.start();
        replicas.push({ node: t.id, shard, driver, sm });
      }
    }
    const leaders = await Promise.all(
      shards.map((shard) =>
        waitFor(
          () => {
            const group = replicas.filter((r) => r.shard === shard);
            const ls = group.filter((r) => r.driver.isLeader());
            return ls.length === 1 && group.every((r) => r.driver.leader() === ls[0]!.node)
              ? ls[0]
              : undefined;
          },
          15_000,
          `a leader for shard ${shard}`,
        ),
      ),
    );
    await Promise.all(
      leaders.map((l) =>
        Promise.all(Array.from({ length: 50 }, (_, i) => l.driver.propose(enc.encode(`s${l.shard}-${i}`)))),
      ),
    );
    for (const shard of shards) {
      const want = Array.from({ length: 50 }, (_, i) => `s${shard}-${i}`);
      for (const r of replicas.filter((x) => x.shard === shard)) {
        await waitFor(() => r.sm.log.length === 50, 10_000, `${r.node}/${shard} to apply`);
        expect(r.sm.log).toEqual(want);
      }
    }
    // Heartbeats and appends of the three shards shared frames.
    for (const t of transports) expect(t.stats.framesSent).toBeLessThan(t.stats.messagesSent);
  });

  it(`catches a lagging follower up with a streamed snapshot (seed ${SEED})`, async () => {
    const ids = ['n1', 'n2', 'n3'];
    transports = await startMesh(
      ids,
      { backoffInitialMs: 20, backoffMaxMs: 200, snapshotChunkBytes: 256 },
      SEED,
    );
    const rng = new Rng(SEED + 1);
    const storages = new Map(
      ids.map((id) => [id, new MemoryLogStorage({ conf: { voters: ids, learners: [] } })]),
    );
    const startReplica = async (t: PeerTransport): Promise<Replica> => {
      const sm = new RecordingStateMachine();
      const driver = new RaftDriver({
        id: t.id,
        storage: storages.get(t.id)!,
        transport: t.shard(4),
        stateMachine: sm,
        tickMs: 10,
        electionTick: 10,
        heartbeatTick: 2,
        compactThreshold: 20,
        random: rng.fork().fn(),
      });
      await driver.start();
      const r = { node: t.id, shard: 4, driver, sm };
      replicas.push(r);
      return r;
    };
    for (const t of transports) await startReplica(t);
    const leader = await waitFor(
      () => {
        const ls = replicas.filter((r) => r.driver.isLeader());
        return ls.length === 1 && replicas.every((r) => r.driver.leader() === ls[0]!.node)
          ? ls[0]
          : undefined;
      },
      15_000,
      'a leader',
    );
    const lagging = replicas.find((r) => r !== leader)!;
    await lagging.driver.stop();
    // The follower's shard is unregistered while it is down; the leader commits and compacts past it.
    for (let i = 0; i < 100; i++) await leader.driver.propose(enc.encode(`e${i}`));
    expect(leader.driver.status().firstIndex).toBeGreaterThan(lagging.sm.applied + 1);
    const back = await startReplica(transports.find((t) => t.id === lagging.node)!);
    await waitFor(() => back.sm.log.length === 100, 15_000, 'the lagging follower to catch up');
    expect(back.sm.restores).toBeGreaterThanOrEqual(1);
    expect(back.sm.log).toEqual(Array.from({ length: 100 }, (_, i) => `e${i}`));
    const sender = transports.find((t) => t.id === leader.node)!;
    expect(sender.stats.snapshotsSent).toBeGreaterThanOrEqual(1);
  });
});
