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

/** A bearer token, or a function returning the current one (called per call: lets a caller rotate JWTs). */
export type BearerToken = string | (() => string);

/**
 * A client interceptor that sends `authorization: Bearer <token>` with every call. Metadata rather than
 * grpc-js call credentials, because those are refused on a plaintext channel and a token over a private
 * plaintext network (or a TLS-terminating proxy) is a supported setup.
 */
export function bearerInterceptor(token: BearerToken): grpc.Interceptor {
  const current = typeof token === 'string' ? () => token : token;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${current()}`);
        next(metadata, listener);
      },
    });
}

/** Checks a static token's shape: one header-safe word. */
export function checkToken(token: BearerToken | undefined): void {
  if (typeof token !== 'string') return;
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw invalidArgument('token_invalid', 'token', 'token: must be printable ASCII without spaces');
  }
}
