/**
 * TLS against real gRPC servers. Fixtures (test/client/fixtures, valid until 2126): a test CA, a server
 * certificate for DNS:tidemark.test and IP:127.0.0.1, and a client certificate, all signed by the CA
 * (openssl req -x509 / openssl x509 -req; the CA key is not kept).
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { channelCredentials, TidemarkClient, type TidemarkError } from '../../src/client/index.js';
import { type FakeCluster, startFakeCluster } from './fake-cluster.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url));
const ca = fixture('ca.pem');

let cluster: FakeCluster | undefined;
let client: TidemarkClient | undefined;

afterEach(async () => {
  await client?.close();
  await cluster?.stop();
  client = undefined;
  cluster = undefined;
});

function serverCredentials(requireClientCert: boolean): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(
    ca,
    [{ cert_chain: fixture('server.pem'), private_key: fixture('server-key.pem') }],
    requireClientCert,
  );
}

describe('TLS', () => {
  it('writes over mutual TLS', async () => {
    cluster = await startFakeCluster({ nodes: 2, shards: 4, credentials: serverCredentials(true) });
    client = await TidemarkClient.connect({
      endpoints: cluster.endpoints,
      tls: { ca, cert: fixture('client.pem'), key: fixture('client-key.pem') },
    });
    const map = await client.shardMap();
    expect(map?.shardCount).toBe(4);
    const res = await client.write([{ metric: 'm', tags: { a: 'b' }, timestamp: 1, value: 2 }]);
    expect(res.accepted).toBe(1);
  });

  it('checks the server name against serverName', async () => {
    cluster = await startFakeCluster({ nodes: 1, shards: 1, credentials: serverCredentials(false) });
    client = await TidemarkClient.connect({
      endpoints: cluster.endpoints,
      tls: { ca: ca.toString('utf8'), serverName: 'tidemark.test' },
    });
    expect((await client.status()).nodeId).toBe('n0');
    const wrong = await TidemarkClient.connect({
      endpoints: cluster.endpoints,
      deadlineMs: 1000,
      retry: { maxAttempts: 1 },
      tls: { ca, serverName: 'other.test' },
    });
    try {
      const err = await wrong.status().then(
        () => undefined,
        (e: TidemarkError) => e,
      );
      expect(err?.code).toBe('UNAVAILABLE');
    } finally {
      await wrong.close();
    }
  });

  it('builds credentials from the options', () => {
    expect(channelCredentials(undefined)._isSecure()).toBe(false);
    expect(channelCredentials({ ca })._isSecure()).toBe(true);
    expect(() => channelCredentials({ cert: 'x' })).toThrow(expect.objectContaining({ field: 'tls.key' }));
    expect(() => channelCredentials({ key: 'x' })).toThrow(expect.objectContaining({ field: 'tls.cert' }));
  });
});
