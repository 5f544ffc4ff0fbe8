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
import { nodeSecurity, requireSecurePeers } from '../security/node-security.js';

/** Bearer tokens must never reach a log line, whatever object a log call is handed (docs/security.md). */
export const LOG_REDACT = {
  paths: [
    'authorization',
    '*.authorization',
    'headers.authorization',
    '*.headers.authorization',
    'req.headers.authorization',
    'token',
    '*.token',
  ],
  censor: '[redacted]',
};

export async function start(argv: string[]): Promise<number> {
  const config = loadConfig({ argv, env: process.env, hostname: hostname() });
  const logger = pino(
    { name: 'tidemark', base: { node: config.nodeId }, redact: LOG_REDACT },
    pino.destination({ sync: true }),
  );
  // Refuse a clear-text peer port in a multi-node cluster unless --insecure (docs/security.md).
  requireSecurePeers(config);
  const security = nodeSecurity(config);
  const node = await TidemarkNode.start(config, { logger, security });
  const http = createHttpApi({
    cluster: node,
    logger,
    metrics: node.metrics.registry,
    auth: security.authenticator,
    https: security.https,
  });
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
      tls:
        security.tls === undefined
          ? 'off'
          : { names: security.tls.names, clientAuth: config.tls?.clientAuth },
      auth: security.authenticator === undefined ? 'off' : 'on',
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
