/**
 * Bearer-token authentication and role checks for the client APIs (gRPC `authorization` metadata, HTTP
 * `Authorization` header). Two kinds of token, either or both configured:
 *
 *  - static tokens from a token file: one `<token> <role> [name]` per line (`#` starts a comment);
 *  - JWTs signed with HS256 (shared secret) or RS256 (public key), claims `role` (or `roles`: the highest
 *    counts), `sub`, `exp`, `nbf`. Only the algorithms configured are accepted: `none` and any other `alg`
 *    are refused, so a token cannot pick its own verification (the classic HS256-with-the-public-key trick).
 *
 * Roles are ordered: admin ⊇ write ⊇ read. Verification uses node:crypto only. Pure apart from the
 * injected clock; the loader (`loadAuthenticator`) is the only part that reads files.
 */
import {
  createHash,
  createHmac,
  createPublicKey,
  createSign,
  type KeyObject,
  timingSafeEqual,
  verify,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { invalidArgument, permissionDenied, TidemarkError, unauthenticated } from '../errors/index.js';

export type Role = 'read' | 'write' | 'admin';
export const ROLES: readonly Role[] = ['read', 'write', 'admin'];
const RANK: Record<Role, number> = { read: 1, write: 2, admin: 3 };

export function isRole(v: unknown): v is Role {
  return v === 'read' || v === 'write' || v === 'admin';
}

/** Whether `have` includes the rights of `need`. */
export function roleSatisfies(have: Role, need: Role): boolean {
  return RANK[have] >= RANK[need];
}

export interface Principal {
  /** Who: the token file's name column, or the JWT `sub` (for logs; never the token). */
  readonly subject: string;
  readonly role: Role;
  /** How the token was verified. */
  readonly via: 'token' | 'jwt-hs256' | 'jwt-rs256';
}

export interface AuthenticatorOptions {
  /** Static tokens: sha256(token) hex → principal (see parseTokenFile). */
  tokens?: ReadonlyMap<string, Principal>;
  /** HS256 shared secret (at least 32 bytes). */
  hs256Secret?: Uint8Array;
  /** RS256 public key (PEM text or a KeyObject). */
  rs256PublicKey?: string | KeyObject;
  /** Clock in ms (default Date.now). */
  now?: () => number;
  /** Tolerated clock skew for exp/nbf, in seconds (default 30). */
  leewaySeconds?: number;
}

const sha256hex = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

/**
 * Parses a token file. Tokens are kept only as SHA-256 hashes, so the map (and a heap dump) does not hold
 * them; a lookup by hash also avoids a byte-by-byte comparison whose timing depends on the token.
 */
export function parseTokenFile(text: string, source = 'token file'): Map<string, Principal> {
  const out = new Map<string, Principal>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*$/, '').trim();
    if (line === '') continue;
    const [token, role, name, ...rest] = line.split(/\s+/);
    const where = `${source}:${i + 1}`;
    if (rest.length > 0 || role === undefined) {
      throw invalidArgument('token_file_invalid', 'auth.tokenFile', `${where}: want "<token> <role> [name]"`);
    }
    if (!isRole(role)) {
      throw invalidArgument(
        'token_file_invalid',
        'auth.tokenFile',
        `${where}: role must be read, write or admin, got ${JSON.stringify(role)}`,
      );
    }
    if (token!.length < 16) {
      throw invalidArgument(
        'token_file_invalid',
        'auth.tokenFile',
        `${where}: a token needs at least 16 characters`,
      );
    }
    const h = sha256hex(token!);
    if (out.has(h))
      throw invalidArgument('token_file_invalid', 'auth.tokenFile', `${where}: duplicate token`);
    out.set(h, { subject: name ?? `token-line-${i + 1}`, role, via: 'token' });
  }
  return out;
}

function b64urlJson(part: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    throw unauthenticated('token_malformed', `the token's ${what} is not base64url JSON`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw unauthenticated('token_malformed', `the token's ${what} is not a JSON object`);
  }
  return v as Record<string, unknown>;
}

export class Authenticator {
  private readonly tokens: ReadonlyMap<string, Principal>;
  private readonly hs256: Uint8Array | undefined;
  private readonly rs256: KeyObject | undefined;
  private readonly now: () => number;
  private readonly leeway: number;

  constructor(options: AuthenticatorOptions) {
    this.tokens = options.tokens ?? new Map();
    if (options.hs256Secret !== undefined && options.hs256Secret.byteLength < 32) {
      // RFC 7518 §3.2: the HMAC key must be at least as long as the hash output.
      throw invalidArgument(
        'jwt_secret_short',
        'auth.jwtHs256SecretFile',
        'the HS256 secret needs at least 32 bytes',
      );
    }
    this.hs256 = options.hs256Secret;
    const pk = options.rs256PublicKey;
    this.rs256 = pk === undefined ? undefined : typeof pk === 'string' ? createPublicKey(pk) : pk;
    if (this.rs256 !== undefined && this.rs256.asymmetricKeyType !== 'rsa') {
      throw invalidArgument(
        'jwt_key_invalid',
        'auth.jwtRs256PublicKeyFile',
        'the RS256 key must be an RSA public key',
      );
    }
    this.now = options.now ?? Date.now;
    this.leeway = options.leewaySeconds ?? 30;
  }

  /** Verifies an `Authorization` value (`Bearer <token>`); throws UNAUTHENTICATED. */
  authenticate(authorization: string | undefined): Principal {
    if (authorization === undefined || authorization === '') {
      throw unauthenticated('token_missing', 'a bearer token is required (Authorization: Bearer <token>)');
    }
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
    if (m === null)
      throw unauthenticated('token_malformed', 'the Authorization value must be "Bearer <token>"');
    const token = m[1]!;
    const fixed = this.tokens.get(sha256hex(token));
    if (fixed !== undefined) return fixed;
    if (token.split('.').length === 3 && (this.hs256 !== undefined || this.rs256 !== undefined)) {
      return this.verifyJwt(token);
    }
    throw unauthenticated('token_unknown', 'the bearer token is not valid');
  }

  /** Authenticates and checks the role; throws UNAUTHENTICATED or PERMISSION_DENIED. */
  authorize(authorization: string | undefined, need: Role): Principal {
    const p = this.authenticate(authorization);
    if (!roleSatisfies(p.role, need)) {
      throw permissionDenied(need, `this operation needs the ${need} role; the token has ${p.role}`);
    }
    return p;
  }

  private verifyJwt(token: string): Principal {
    const [h, p, s] = token.split('.') as [string, string, string];
    const header = b64urlJson(h, 'header');
    const alg = header.alg;
    const data = Buffer.from(`${h}.${p}`, 'ascii');
    const sig = Buffer.from(s, 'base64url');
    let via: Principal['via'];
    if (alg === 'HS256' && this.hs256 !== undefined) {
      const want = createHmac('sha256', this.hs256).update(data).digest();
      if (sig.length !== want.length || !timingSafeEqual(sig, want)) {
        throw unauthenticated('token_bad_signature', 'the token signature does not verify');
      }
      via = 'jwt-hs256';
    } else if (alg === 'RS256' && this.rs256 !== undefined) {
      if (!verify('sha256', data, this.rs256, sig)) {
        throw unauthenticated('token_bad_signature', 'the token signature does not verify');
      }
      via = 'jwt-rs256';
    } else {
      throw unauthenticated('token_bad_alg', `the token algorithm ${JSON.stringify(alg)} is not accepted`);
    }
    const claims = b64urlJson(p, 'payload');
    const nowS = this.now() / 1000;
    if (claims.exp !== undefined && (typeof claims.exp !== 'number' || nowS > claims.exp + this.leeway)) {
      throw unauthenticated('token_expired', 'the token has expired');
    }
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || nowS + this.leeway < claims.nbf)) {
      throw unauthenticated('token_not_yet_valid', 'the token is not valid yet');
    }
    const listed = Array.isArray(claims.roles) ? claims.roles : [claims.role];
    let role: Role | undefined;
    for (const r of listed) if (isRole(r) && (role === undefined || RANK[r] > RANK[role])) role = r;
    if (role === undefined)
      throw unauthenticated('token_no_role', 'the token carries no read, write or admin role');
    return { subject: typeof claims.sub === 'string' ? claims.sub : 'jwt', role, via };
  }
}

export interface AuthFiles {
  tokenFile?: string;
  jwtHs256SecretFile?: string;
  jwtRs256PublicKeyFile?: string;
}

/** Builds the node's authenticator from files; undefined when no auth is configured (the API is open). */
export function loadAuthenticator(files: AuthFiles, now?: () => number): Authenticator | undefined {
  const read = (path: string, field: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new TidemarkError(
        'INVALID_ARGUMENT',
        'auth_file_unreadable',
        `${field}: cannot read ${path}: ${(err as Error).message}`,
        {
          field,
        },
      );
    }
  };
  const opts: AuthenticatorOptions = { now };
  let any = false;
  if (files.tokenFile) {
    opts.tokens = parseTokenFile(read(files.tokenFile, 'auth.tokenFile').toString('utf8'), files.tokenFile);
    any = true;
  }
  if (files.jwtHs256SecretFile) {
    // A trailing newline from `echo > file` is not part of the secret.
    const text = read(files.jwtHs256SecretFile, 'auth.jwtHs256SecretFile')
      .toString('utf8')
      .replace(/\r?\n$/, '');
    opts.hs256Secret = Buffer.from(text, 'utf8');
    any = true;
  }
  if (files.jwtRs256PublicKeyFile) {
    const pem = read(files.jwtRs256PublicKeyFile, 'auth.jwtRs256PublicKeyFile').toString('utf8');
    try {
      opts.rs256PublicKey = createPublicKey(pem);
    } catch (err) {
      throw invalidArgument(
        'jwt_key_invalid',
        'auth.jwtRs256PublicKeyFile',
        `auth.jwtRs256PublicKeyFile: ${files.jwtRs256PublicKeyFile} is not a PEM public key: ${(err as Error).message}`,
      );
    }
    any = true;
  }
  return any ? new Authenticator(opts) : undefined;
}

/** Signs a JWT (tests, `tidemark certs`-style tooling): HS256 with a secret or RS256 with a private key. */
export function signJwt(
  claims: Record<string, unknown>,
  key: { hs256: Uint8Array } | { rs256: string | KeyObject },
  header: Record<string, unknown> = {},
): string {
  const alg = 'hs256' in key ? 'HS256' : 'RS256';
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o), 'utf8').toString('base64url');
  const data = `${enc({ alg, typ: 'JWT', ...header })}.${enc(claims)}`;
  const sig =
    'hs256' in key
      ? createHmac('sha256', key.hs256).update(data).digest()
      : createSign('RSA-SHA256').update(data).sign(key.rs256);
  return `${data}.${sig.toString('base64url')}`;
}
