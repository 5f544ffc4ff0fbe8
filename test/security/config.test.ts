/** The security settings: parsing (bare boolean flags, variables), the insecure-peer rule, log redaction. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { LOG_REDACT } from '../../src/cli/start.js';
import { loadConfig } from '../../src/cluster/config.js';
import { TidemarkError } from '../../src/errors/index.js';
import { requireSecurePeers } from '../../src/security/node-security.js';

const PEERS = 'a=10.0.0.1:4244,b=10.0.0.2:4244';

describe('security settings', () => {
  it('reads the TLS, insecure and auth settings from flags and variables', () => {
    const c = loadConfig({
      argv: [
        '--node-id=a',
        `--peers=${PEERS}`,
        '--tls-ca=/t/ca.crt',
        '--tls-cert=/t/a.crt',
        '--tls-key=/t/a.key',
      ],
      env: { TIDEMARK_TLS_CLIENT_AUTH: 'true', TIDEMARK_AUTH_TOKEN_FILE: '/auth/tokens' },
    });
    expect(c.tls).toEqual({ ca: '/t/ca.crt', cert: '/t/a.crt', key: '/t/a.key', clientAuth: true });
    expect(c.auth).toEqual({ tokenFile: '/auth/tokens', jwtHs256SecretFile: '', jwtRs256PublicKeyFile: '' });
    expect(c.insecure).toBeUndefined();
    expect(loadConfig({ argv: ['--insecure'] }).insecure).toBe(true);
    expect(loadConfig({ env: { TIDEMARK_INSECURE: 'true' } }).insecure).toBe(true);
    expect(loadConfig({ env: { TIDEMARK_INSECURE: 'false' } }).insecure).toBeUndefined();
  });

  it('names a bad boolean', () => {
    expect(() => loadConfig({ env: { TIDEMARK_INSECURE: 'yes please' } })).toThrow(
      /TIDEMARK_INSECURE.*true or false/,
    );
  });

  it('a node with peers needs TLS or --insecure; a single node does not', () => {
    const withPeers = loadConfig({ argv: ['--node-id=a', `--peers=${PEERS}`] });
    let e: unknown;
    try {
      requireSecurePeers(withPeers);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(TidemarkError);
    expect(e).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'tls_required' });
    expect(() =>
      requireSecurePeers(loadConfig({ argv: ['--node-id=a', `--peers=${PEERS}`, '--insecure'] })),
    ).not.toThrow();
    expect(() =>
      requireSecurePeers(
        loadConfig({
          argv: ['--node-id=a', `--peers=${PEERS}`, '--tls-ca=c', '--tls-cert=a', '--tls-key=k'],
        }),
      ),
    ).not.toThrow();
    expect(() => requireSecurePeers(loadConfig({}))).not.toThrow();
  });
});

describe('log redaction', () => {
  it('never writes an authorization header or token field', () => {
    let out = '';
    const sink = new Writable({
      write(chunk, _enc, cb) {
        out += chunk.toString();
        cb();
      },
    });
    const log = pino({ redact: LOG_REDACT }, sink);
    log.info({ req: { headers: { authorization: 'Bearer sekrit-1' } } }, 'request');
    log.info({ headers: { authorization: 'Bearer sekrit-2' }, token: 'sekrit-3' }, 'other');
    log.info({ authorization: 'Bearer sekrit-4', call: { token: 'sekrit-5' } }, 'call');
    expect(out).toContain('[redacted]');
    expect(out).not.toMatch(/sekrit/);
  });
});
