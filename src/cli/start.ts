/**
 * `tidemark start [flags]`: runs one node: the cluster node (gRPC client API, peer API) and the HTTP API. Configuration: defaults < config file < TIDEMARK_* < flags
 * (docs/configuration.md). Logs its endpoints as JSON (pino); SIGINT / SIGTERM close it gracefully
 * (leaderships handed over, replicas checkpointed) and the process exits 0.
 */
import { hostname } from 'node:os';
import { pino } from 'pino';
import { createHttpApi } from '../api/http.js';
import { loadConfig, splitHostPort } from '../cluster/config.js';
import { TidemarkNode } from '../cluster/node.js';

export async function start(argv: string[]): Promise<number> {
  const config = loadConfig({ argv, env: process.env, hostname: hostname() });
  const logger = pino({ name: 'tidemark', base: { node: config.nodeId } }, pino.destination({ sync: true }));
  const node = await TidemarkNode.start(config, { logger });
  const http = createHttpApi({ cluster: node, logger, metrics: node.metrics.registry });
  let httpAddress: string;
  try {
    const hp = splitHostPort(config.listen.http)!;
    const bound = await http.listen(hp.host, hp.port);
    httpAddress = `${bound.host}:${bound.port}`;
  } catch (err) {
    await node.close();
    throw err;
  }
  logger.info(
    {
      http: httpAddress,
      grpc: node.endpoints.grpc,
      peer: node.endpoints.peer,
      advertisePeer: config.advertisePeer,
      peers: config.peers.map((p) => `${p.id}=${p.address}`),
      shards: config.shards,
      replication: config.replication,
      localShards: [...node.replicas.keys()],
      dataDir: config.dataDir,
    },
    'tidemark node started',
  );
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  logger.info({ signal }, 'shutting down');
  await http.close(2000);
  await node.close();
  logger.info('stopped');
  return 0;
}
