/**
 * TLS material checks and real grpc-js mutual TLS on 127.0.0.1 with certificates from `tidemark certs`:
 * chain and client-certificate verification, and the SAN check against the name dialled.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certs as certs_, sanOf } from '../../src/cli/certs.js';
import { TidemarkError } from '../../src/errors/index.js';
import { TidemarkService } from '../../src/gen/tidemark/v1/client_pb.js';
import {
  loadTlsMaterial,
  peerChannelCredentials,
  serverCredentials,
  type TlsMaterial,
} from '../../src/security/tls.js';
import { bindServer, createClient, createServer, shutdownServer } from '../../src/transport/grpc-adapter.js';
import { addStubService, filesOf, makeTestCerts } from './fixtures.js';

let certs: ReturnType<typeof makeTestCerts>;
beforeAll(() => {
  certs = makeTestCerts();
});
afterAll(() => rmSync(certs.root, { recursive: true, force: true }));

function err(fn: () => unknown): TidemarkError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TidemarkError);
    return e as TidemarkError;
  }
  throw new Error('expected a TidemarkError');
}

describe('tidemark certs', () => {
  it('puts the node id, domain names, extra hosts, localhost and 127.0.0.1 in the SAN', () => {
    expect(sanOf('db-0', ['peer', 'peer.ns.svc'], ['db.example.com', '10.0.0.5'])).toBe(
      'DNS:db-0,DNS:db-0.peer,DNS:db-0.peer.ns.svc,DNS:db.example.com,IP:10.0.0.5,DNS:localhost,IP:127.0.0.1',
    );
  });
});

describe('tidemark certs command', () => {
  it('refuses bad arguments with exit 2 and writes the files with exit 0', async () => {
    const out = join(certs.root, 'cli');
    const quiet = { log: console.log, error: console.error };
    console.log = () => {};
    console.error = () => {};
    try {
      expect(await certs_(['--nodes', 'a'])).toBe(2);
      expect(await certs_(['--out', out, '--nodes', 'bad id'])).toBe(2);
      expect(await certs_(['--out', out, '--nodes', 'x', '--hosts', 'not a host'])).toBe(2);
      expect(await certs_(['--out', out, '--nodes', 'x', '--days', '0'])).toBe(2);
      expect(await certs_(['--out', out, '--nodes', 'x,y', '--hosts', 'x.example'])).toBe(0);
    } finally {
      console.log = quiet.log;
      console.error = quiet.error;
    }
    expect(loadTlsMaterial(filesOf(out, 'y'))!.names).toEqual(['y', 'x.example', 'localhost', '127.0.0.1']);
  });
});

describe('loadTlsMaterial', () => {
  it('loads matching material and reports the SAN names', () => {
    const m = loadTlsMaterial(filesOf(certs.main, 'a'))!;
    expect(m.names).toEqual(['a', 'localhost', '127.0.0.1']);
    expect(loadTlsMaterial({})).toBeUndefined();
  });

  it('accepts a certificate that chains to one of several CAs (CA rotation)', () => {
    const both = join(certs.root, 'both-ca.crt');
    writeFileSync(
      both,
      readFileSync(join(certs.main, 'ca.crt'), 'utf8') + readFileSync(join(certs.other, 'ca.crt'), 'utf8'),
    );
    expect(loadTlsMaterial({ ...filesOf(certs.other, 'c'), ca: both })!.names).toContain('c');
    expect(loadTlsMaterial({ ...filesOf(certs.main, 'b'), ca: both })!.names).toContain('b');
  });

  it('refuses incomplete, unreadable, non-PEM, mismatched, foreign and expired material, naming the setting', () => {
    const a = filesOf(certs.main, 'a');
    expect(err(() => loadTlsMaterial({ ca: a.ca, cert: a.cert }))).toMatchObject({
      reason: 'tls_incomplete',
      details: { field: 'tls.key' },
    });
    expect(err(() => loadTlsMaterial({ ...a, key: join(certs.root, 'nope') }))).toMatchObject({
      reason: 'tls_file_unreadable',
      details: { field: 'tls.key' },
    });
    expect(err(() => loadTlsMaterial({ ...a, cert: a.key }))).toMatchObject({
      reason: 'tls_invalid',
      details: { field: 'tls.cert' },
    });
    expect(err(() => loadTlsMaterial({ ...a, key: filesOf(certs.main, 'b').key }))).toMatchObject({
      reason: 'tls_key_mismatch',
    });
    expect(err(() => loadTlsMaterial({ ...a, ca: join(certs.other, 'ca.crt') }))).toMatchObject({
      reason: 'tls_untrusted',
    });
    const later = Date.now() + 10 * 86_400_000;
    expect(err(() => loadTlsMaterial(a, later))).toMatchObject({
      reason: 'tls_expired',
      details: { field: 'tls.cert' },
    });
  });
});

describe('mutual TLS between nodes (grpc-js)', () => {
  let server: grpc.Server;
  let port: number;
  let a: TlsMaterial;
  let b: TlsMaterial;
  const clients: { close(): void }[] = [];

  beforeAll(async () => {
    a = loadTlsMaterial(filesOf(certs.main, 'a'))!;
    b = loadTlsMaterial(filesOf(certs.main, 'b'))!;
    server = createServer();
    addStubService(server);
    port = await bindServer(server, '127.0.0.1:0', serverCredentials(a, true));
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await shutdownServer(server);
  });

  const dial = (credentials: grpc.ChannelCredentials, host = 'localhost', override?: string) => {
    const c = createClient(TidemarkService, `${host}:${port}`, {
      credentials,
      grpcOptions: override === undefined ? {} : { 'grpc.ssl_target_name_override': override },
    });
    clients.push(c);
    return c.shardMap({}, { timeoutMs: 5000 });
  };

  it('a node of the same CA gets through, by name or by 127.0.0.1', async () => {
    expect((await dial(peerChannelCredentials(b))).shardCount).toBe(7);
    expect((await dial(peerChannelCredentials(b), '127.0.0.1')).shardCount).toBe(7);
  });

  it('checks that the server certificate names the host dialled', async () => {
    // Node a's certificate does not name "c": a peer dialling "c" must not accept it.
    await expect(dial(peerChannelCredentials(b), 'localhost', 'c')).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    expect((await dial(peerChannelCredentials(b), 'localhost', 'a')).shardCount).toBe(7);
  });

  it('refuses a client with a certificate from another CA, without one, or in plaintext', async () => {
    const foreign = loadTlsMaterial(filesOf(certs.other, 'a'))!;
    const foreignClient = grpc.credentials.createSsl(a.ca, foreign.key, foreign.cert);
    await expect(dial(foreignClient)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(dial(grpc.credentials.createSsl(a.ca))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(dial(grpc.credentials.createInsecure())).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('a node does not trust a server whose certificate comes from another CA', async () => {
    const foreign = loadTlsMaterial(filesOf(certs.other, 'a'))!;
    const s2 = createServer();
    addStubService(s2);
    const p2 = await bindServer(s2, '127.0.0.1:0', serverCredentials(foreign, false));
    const c = createClient(TidemarkService, `localhost:${p2}`, { credentials: peerChannelCredentials(b) });
    try {
      await expect(c.shardMap({}, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    } finally {
      c.close();
      await shutdownServer(s2);
    }
  });

  it('the client certificate from `tidemark certs` passes a server that requires client certificates', async () => {
    const creds = grpc.credentials.createSsl(
      readFileSync(join(certs.main, 'ca.crt')),
      readFileSync(join(certs.main, 'client.key')),
      readFileSync(join(certs.main, 'client.crt')),
    );
    expect((await dial(creds)).shardCount).toBe(7);
  });
});
