import * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../errors/index.js';

/** TLS for the client API. PEM strings or buffers. */
export interface TlsOptions {
  /** CA certificate(s) the server's certificate must chain to; the system roots when absent. */
  ca?: string | Buffer;
  /** Client certificate, for mutual TLS (needs `key`). */
  cert?: string | Buffer;
  /** Client private key, for mutual TLS (needs `cert`). */
  key?: string | Buffer;
  /** Expected name in the server's certificate when it differs from the endpoint's host. */
  serverName?: string;
}

const buf = (v: string | Buffer | undefined): Buffer | null =>
  v === undefined ? null : typeof v === 'string' ? Buffer.from(v, 'utf8') : v;

/** gRPC channel credentials from TLS options (insecure when `tls` is undefined). */
export function channelCredentials(tls: TlsOptions | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    const field = tls.cert === undefined ? 'tls.cert' : 'tls.key';
    throw invalidArgument('tls_invalid', field, `${field}: client certificate and key go together`);
  }
  return grpc.credentials.createSsl(buf(tls.ca), buf(tls.key), buf(tls.cert));
}

/** Channel options that go with the credentials (the TLS server-name override). */
export function tlsChannelOptions(tls: TlsOptions | undefined): grpc.ChannelOptions {
  if (tls?.serverName === undefined) return {};
  return { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName };
}
