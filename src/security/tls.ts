/**
 * TLS material for a node: one CA, one certificate + key per node (`tidemark certs`). Loaded and checked
 * once at start, so a wrong file fails the start with a message naming the setting instead of surfacing as
 * handshake failures later:
 *  - every file is readable PEM; the key matches the certificate; the certificate chains to the CA and is
 *    inside its validity period.
 *
 * Uses of the same material:
 *  - peer port: server requires a client certificate from the CA (mutual TLS); outgoing peer channels
 *    verify the server's chain and that its SAN matches the host dialled, which is the peer's stable name
 *    (`<pod>.<service>` in a StatefulSet), and present this node's certificate;
 *  - client gRPC port and HTTPS: the same certificate; client certificates required only with
 *    `tls.clientAuth`.
 */

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { invalidArgument, TidemarkError } from '../errors/index.js';

export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The names (DNS and IP) in the certificate's SAN, for logs. */
  readonly names: readonly string[];
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TidemarkError(
      'INVALID_ARGUMENT',
      'tls_file_unreadable',
      `${field}: cannot read ${path}: ${(err as Error).message}`,
      {
        field,
      },
    );
  }
}

function cert(pem: Buffer, field: string, path: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw invalidArgument(
      'tls_invalid',
      field,
      `${field}: ${path} is not a PEM certificate: ${(err as Error).message}`,
    );
  }
}

/** SAN entries as "DNS:x" / "IP Address:y" → plain names. */
function sanNames(c: X509Certificate): string[] {
  return (c.subjectAltName ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
    .map((e) => e.slice(e.indexOf(':') + 1));
}

/** Validates PEM material already in memory (files named only in messages). */
export function checkTlsMaterial(
  ca: Buffer,
  certPem: Buffer,
  keyPem: Buffer,
  paths: TlsFiles = {},
  now: number = Date.now(),
): TlsMaterial {
  // tls.ca may hold several CAs (concatenated PEM) while a CA is rotated; the certificate must chain to one.
  const blocks =
    ca.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const cas =
    blocks.length === 0
      ? [cert(ca, 'tls.ca', paths.ca ?? 'the CA')]
      : blocks.map((b) => cert(Buffer.from(b), 'tls.ca', paths.ca ?? 'the CA'));
  const own = cert(certPem, 'tls.cert', paths.cert ?? 'the certificate');
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw invalidArgument(
      'tls_invalid',
      'tls.key',
      `tls.key: ${paths.key ?? 'the key'} is not a PEM private key: ${(err as Error).message}`,
    );
  }
  if (!own.checkPrivateKey(key)) {
    throw invalidArgument(
      'tls_key_mismatch',
      'tls.key',
      `tls.key: ${paths.key ?? 'the key'} does not belong to ${paths.cert ?? 'the certificate'}`,
    );
  }
  const caCert = cas.find((c) => own.issuer === c.subject && own.verify(c.publicKey));
  if (caCert === undefined) {
    throw invalidArgument(
      'tls_untrusted',
      'tls.cert',
      `tls.cert: ${paths.cert ?? 'the certificate'} is not signed by the CA in ${paths.ca ?? 'tls.ca'}`,
    );
  }
  for (const [c, field] of [
    [caCert, 'tls.ca'],
    [own, 'tls.cert'],
  ] as const) {
    if (now < Date.parse(c.validFrom) || now > Date.parse(c.validTo)) {
      throw invalidArgument(
        'tls_expired',
        field,
        `${field}: certificate valid ${c.validFrom} – ${c.validTo}, not now`,
      );
    }
  }
  return { ca, cert: certPem, key: keyPem, names: sanNames(own) };
}

/** Loads `tls.ca`/`tls.cert`/`tls.key`: all three or none (undefined: no TLS). */
export function loadTlsMaterial(files: TlsFiles, now?: number): TlsMaterial | undefined {
  const given = [files.ca, files.cert, files.key].filter((f) => f !== undefined && f !== '').length;
  if (given === 0) return undefined;
  if (given !== 3) {
    const missing = (['ca', 'cert', 'key'] as const).filter((k) => !files[k]).map((k) => `tls.${k}`);
    throw invalidArgument(
      'tls_incomplete',
      missing[0]!,
      `TLS needs tls.ca, tls.cert and tls.key together; missing ${missing.join(', ')}`,
    );
  }
  return checkTlsMaterial(
    readPem(files.ca!, 'tls.ca'),
    readPem(files.cert!, 'tls.cert'),
    readPem(files.key!, 'tls.key'),
    files,
    now,
  );
}

/** gRPC server credentials; `requireClientCert` makes it mutual TLS (client cert must chain to the CA). */
export function serverCredentials(m: TlsMaterial, requireClientCert: boolean): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(
    m.ca,
    [{ private_key: m.key, cert_chain: m.cert }],
    requireClientCert,
  );
}

/**
 * The server-identity check of peer channels: the certificate's SAN must name the host dialled (the peer's
 * stable name from `--peers` / StatefulSet mode). Explicit so that a grpc-js upgrade cannot silently drop it.
 */
export function checkPeerIdentity(host: string, peerCert: PeerCertificate): Error | undefined {
  return checkServerIdentity(host, peerCert);
}

/** Channel credentials of node-to-node clients: verify the peer, present this node's certificate. */
export function peerChannelCredentials(m: TlsMaterial): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(m.ca, m.key, m.cert, { checkServerIdentity: checkPeerIdentity });
}

/** node:https server options for the HTTP API. */
export function httpsOptions(
  m: TlsMaterial,
  requireClientCert: boolean,
): { ca: Buffer; cert: Buffer; key: Buffer; requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    ca: m.ca,
    cert: m.cert,
    key: m.key,
    requestCert: requireClientCert,
    rejectUnauthorized: requireClientCert,
  };
}
