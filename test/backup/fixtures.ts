/**
 * In-process clusters for the backup tests: real TidemarkNodes (LMDB stores and logs, gRPC peer and client
 * ports), configured from the same command-line flags `tidemark start` / `tidemark restore` take.
 */
import { join } from 'node:path';
import { loadConfig, type NodeConfig } from '../../src/cluster/config.js';
import { TidemarkNode } from '../../src/cluster/node.js';
import { canonicalKeyFast } from '../../src/ingest/batch.js';
import { type Series, seriesIdOfKey, shardOf } from '../../src/model/index.js';
import { allocatePorts, peersFlag, waitFor } from '../cluster/fixtures/node-cluster.js';

export { waitFor };

export interface TestCluster {
  ids: string[];
  flags: Map<string, string[]>;
  configs: Map<string, NodeConfig>;
  nodes: Map<string, TidemarkNode>;
}

/** Flags (and the configs they give) for a cluster of `ids` with data under `root/<id>`. */
export async function clusterFlags(
  root: string,
  ids: string[],
  shards: number,
  extra: string[] = [],
): Promise<Pick<TestCluster, 'ids' | 'flags' | 'configs'>> {
  const ports = await allocatePorts(ids);
  const flags = new Map<string, string[]>();
  const configs = new Map<string, NodeConfig>();
  for (const p of ports) {
    const f = [
      `--node-id=${p.id}`,
      `--http=127.0.0.1:${p.http}`,
      `--grpc=127.0.0.1:${p.grpc}`,
      `--peer-listen=127.0.0.1:${p.peer}`,
      `--peers=${peersFlag(ports)}`,
      `--shards=${shards}`,
      '--replication=3',
      `--data-dir=${join(root, p.id)}`,
      '--raft-tick-ms=20',
      '--election-ticks=10',
      '--heartbeat-ticks=1',
      ...extra,
    ];
    flags.set(p.id, f);
    configs.set(p.id, loadConfig({ argv: f, env: {} }));
  }
  return { ids, flags, configs };
}

export async function startCluster(c: Pick<TestCluster, 'ids' | 'flags' | 'configs'>): Promise<TestCluster> {
  const nodes = new Map<string, TidemarkNode>();
  await Promise.all(
    c.ids.map(async (id) =>
      nodes.set(id, await TidemarkNode.start(c.configs.get(id)!, { checkpointIntervalMs: 0 })),
    ),
  );
  await waitFor(() => [...nodes.values()].every((n) => n.readiness().ready), 'cluster readiness', 60_000);
  return { ...c, nodes };
}

export async function stopCluster(c: TestCluster | undefined): Promise<void> {
  if (c === undefined) return;
  await Promise.all([...c.nodes.values()].map((n) => n.close()));
  c.nodes.clear();
}

export function shardOfSeries(s: Series, shards: number): number {
  return shardOf(seriesIdOfKey(canonicalKeyFast(s)), shards);
}
