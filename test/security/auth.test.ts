import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TidemarkError } from '../../src/errors/index.js';
import {
  Authenticator,
  loadAuthenticator,
  parseTokenFile,
  roleSatisfies,
  signJwt,
} from '../../src/security/auth.js';

const NOW = 1_700_000_000_000;
const SECRET = Buffer.from('0123456789abcdef0123456789abcdef-hs256');
const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PUB_PEM = publicKey.export({ type: 'spki', format: 'pem' }).toString();
const now = () => NOW;
const s = NOW / 1000;

function err(fn: () => unknown): TidemarkError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TidemarkError);
    return e as TidemarkError;
  }
  throw new Error('expected a TidemarkError');
}

describe('roles', () => {
  it('admin ⊇ write ⊇ read', () => {
    expect(roleSatisfies('admin', 'write')).toBe(true);
    expect(roleSatisfies('write', 'read')).toBe(true);
    expect(roleSatisfies('read', 'write')).toBe(false);
    expect(roleSatisfies('write', 'admin')).toBe(false);
  });
});

describe('token file', () => {
  const text = '# comment\nreadtoken-0123456789 read grafana\n\nwritetoken-0123456789 write  # ingest\n';
  const auth = new Authenticator({ tokens: parseTokenFile(text) });

  it('maps tokens to roles and names', () => {
    expect(auth.authenticate('Bearer readtoken-0123456789')).toEqual({
      subject: 'grafana',
      role: 'read',
      via: 'token',
    });
    expect(auth.authorize('bearer writetoken-0123456789', 'read').role).toBe('write');
  });

  it('refuses missing, malformed and unknown tokens with UNAUTHENTICATED', () => {
    expect(err(() => auth.authenticate(undefined))).toMatchObject({
      code: 'UNAUTHENTICATED',
      reason: 'token_missing',
    });
    expect(err(() => auth.authenticate('Basic abc'))).toMatchObject({
      code: 'UNAUTHENTICATED',
      reason: 'token_malformed',
    });
    expect(err(() => auth.authenticate('Bearer nope-0123456789'))).toMatchObject({
      code: 'UNAUTHENTICATED',
      reason: 'token_unknown',
    });
  });

  it('refuses a wrong role with PERMISSION_DENIED naming the role', () => {
    const e = err(() => auth.authorize('Bearer readtoken-0123456789', 'write'));
    expect(e.code).toBe('PERMISSION_DENIED');
    expect(e.details.requiredRole).toBe('write');
  });

  it('rejects bad lines, naming the line', () => {
    expect(err(() => parseTokenFile('tok-0123456789abcdef superuser')).message).toMatch(/:1: role must be/);
    expect(err(() => parseTokenFile('\nshort read')).message).toMatch(/:2: a token needs at least 16/);
    expect(err(() => parseTokenFile('tok-0123456789abcdef')).message).toMatch(/want "<token> <role>/);
    expect(
      err(() => parseTokenFile('tok-0123456789abcdef read\ntok-0123456789abcdef admin')).message,
    ).toMatch(/duplicate/);
  });

  it('keeps only hashes of the tokens', () => {
    const map = parseTokenFile('tok-0123456789abcdef read');
    expect([...map.keys()][0]).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify([...map])).not.toContain('tok-0123456789abcdef');
  });
});

describe('JWT', () => {
  const hs = new Authenticator({ hs256Secret: SECRET, now });
  const rs = new Authenticator({ rs256PublicKey: PUB_PEM, now });
  const bearer = (t: string) => `Bearer ${t}`;

  it('accepts a good HS256 token and an RS256 token', () => {
    const t = signJwt({ sub: 'svc', role: 'write', exp: s + 60 }, { hs256: SECRET });
    expect(hs.authorize(bearer(t), 'write')).toEqual({ subject: 'svc', role: 'write', via: 'jwt-hs256' });
    const r = signJwt({ sub: 'ops', roles: ['read', 'admin'], exp: s + 60 }, { rs256: privateKey });
    expect(rs.authorize(bearer(r), 'admin')).toEqual({ subject: 'ops', role: 'admin', via: 'jwt-rs256' });
  });

  it('refuses an expired or not-yet-valid token', () => {
    const old = signJwt({ role: 'read', exp: s - 3600 }, { hs256: SECRET });
    expect(err(() => hs.authenticate(bearer(old))).reason).toBe('token_expired');
    const early = signJwt({ role: 'read', nbf: s + 3600 }, { hs256: SECRET });
    expect(err(() => hs.authenticate(bearer(early))).reason).toBe('token_not_yet_valid');
  });

  it('refuses a bad signature and a tampered payload', () => {
    const other = signJwt({ role: 'read' }, { hs256: Buffer.from('another-secret-another-secret-123') });
    expect(err(() => hs.authenticate(bearer(other))).reason).toBe('token_bad_signature');
    const good = signJwt({ role: 'read' }, { hs256: SECRET });
    const [h, , sig] = good.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ role: 'admin' })).toString('base64url')}.${sig}`;
    expect(err(() => hs.authenticate(bearer(forged))).reason).toBe('token_bad_signature');
    const r = signJwt({ role: 'read' }, { rs256: privateKey });
    const [rh, , rsig] = r.split('.');
    const rforged = `${rh}.${Buffer.from(JSON.stringify({ role: 'admin' })).toString('base64url')}.${rsig}`;
    expect(err(() => rs.authenticate(bearer(rforged))).reason).toBe('token_bad_signature');
  });

  it('refuses alg none, an unconfigured alg and HS256 signed with the RS256 public key', () => {
    const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ role: 'admin' })}.`;
    expect(err(() => hs.authenticate(bearer(none))).reason).toBe('token_bad_alg');
    const none2 = `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ role: 'admin' })}.AAAA`;
    expect(err(() => hs.authenticate(bearer(none2))).reason).toBe('token_bad_alg');
    const rsTok = signJwt({ role: 'read' }, { rs256: privateKey });
    expect(err(() => hs.authenticate(bearer(rsTok))).reason).toBe('token_bad_alg');
    // Key confusion: an HS256 token whose "secret" is the public key must not pass an RS256-only verifier.
    const confused = signJwt({ role: 'admin' }, { hs256: Buffer.from(PUB_PEM) });
    expect(err(() => rs.authenticate(bearer(confused))).reason).toBe('token_bad_alg');
    const es = `${enc({ alg: 'ES256' })}.${enc({ role: 'admin' })}.AAAA`;
    expect(err(() => hs.authenticate(bearer(es))).reason).toBe('token_bad_alg');
  });

  it('refuses a token without a known role, and a short secret', () => {
    const t = signJwt({ role: 'root' }, { hs256: SECRET });
    expect(err(() => hs.authenticate(bearer(t))).reason).toBe('token_no_role');
    expect(err(() => new Authenticator({ hs256Secret: Buffer.from('short') })).reason).toBe(
      'jwt_secret_short',
    );
  });

  it('refuses malformed tokens', () => {
    expect(err(() => hs.authenticate('Bearer a.b.c')).reason).toBe('token_malformed');
    expect(
      err(() => hs.authenticate(bearer(`${Buffer.from('[1]').toString('base64url')}.e30.x`))).reason,
    ).toBe('token_malformed');
  });
});

describe('loadAuthenticator', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-auth-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is undefined without files and reads each kind', () => {
    expect(loadAuthenticator({})).toBeUndefined();
    writeFileSync(join(dir, 'tokens'), 'admintoken-0123456789 admin root\n');
    writeFileSync(join(dir, 'secret'), `${SECRET.toString()}\n`);
    writeFileSync(join(dir, 'pub.pem'), PUB_PEM);
    const a = loadAuthenticator({
      tokenFile: join(dir, 'tokens'),
      jwtHs256SecretFile: join(dir, 'secret'),
      jwtRs256PublicKeyFile: join(dir, 'pub.pem'),
    })!;
    expect(a.authorize('Bearer admintoken-0123456789', 'admin').subject).toBe('root');
    // The trailing newline of the secret file is not part of the secret.
    expect(a.authorize(`Bearer ${signJwt({ role: 'read' }, { hs256: SECRET })}`, 'read').via).toBe(
      'jwt-hs256',
    );
    expect(a.authorize(`Bearer ${signJwt({ role: 'read' }, { rs256: privateKey })}`, 'read').via).toBe(
      'jwt-rs256',
    );
  });

  it('names the setting of an unreadable or invalid file', () => {
    expect(err(() => loadAuthenticator({ tokenFile: join(dir, 'missing') }))).toMatchObject({
      reason: 'auth_file_unreadable',
      details: { field: 'auth.tokenFile' },
    });
    writeFileSync(join(dir, 'bad.pem'), 'not a key');
    expect(err(() => loadAuthenticator({ jwtRs256PublicKeyFile: join(dir, 'bad.pem') }))).toMatchObject({
      reason: 'jwt_key_invalid',
    });
  });
});
