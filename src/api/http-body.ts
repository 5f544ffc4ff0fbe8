/**
 * Bounded request-body reading: the raw size and the decoded (gzip/deflate) size are checked while the
 * body streams in, so an oversized body or a zip bomb is refused as soon as it passes the limit, having
 * buffered at most the limit (plus one chunk).
 */
import type { IncomingMessage } from 'node:http';
import { createGunzip, createInflate, type Gunzip, type Inflate } from 'node:zlib';
import { TidemarkError } from '../errors/index.js';

/** An HTTP-layer failure: a status that is not (only) the error code's mapping, e.g. 413, 415, 408. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: TidemarkError,
    /** For metrics: `raw` / `inflated` for 413s. */
    readonly kind?: string,
  ) {
    super(error.message);
    this.name = 'HttpError';
  }
}

/** The client went away before the body was complete: there is no one to answer. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientGone';
  }
}

export type BodyEncoding = 'identity' | 'gzip' | 'deflate';

/** The body's Content-Encoding; anything but identity, gzip (x-gzip) or deflate is a 415. */
export function bodyEncoding(header: string | undefined): BodyEncoding {
  const v = (header ?? '').trim().toLowerCase();
  if (v === '' || v === 'identity') return 'identity';
  if (v === 'gzip' || v === 'x-gzip') return 'gzip';
  if (v === 'deflate') return 'deflate';
  throw new HttpError(
    415,
    new TidemarkError(
      'INVALID_ARGUMENT',
      'content_encoding_unsupported',
      `Content-Encoding ${JSON.stringify(header)} is not supported (use gzip, deflate or none)`,
      { field: 'content-encoding' },
    ),
  );
}

export interface ReadBodyOptions {
  /** Most bytes on the wire. */
  maxBytes: number;
  /** Most bytes after decoding a compressed body. */
  maxDecodedBytes: number;
  /** Absolute time (Date.now() clock) by which the body must be complete; after it → 408. */
  deadline: number;
}

export function tooLarge(kind: 'raw' | 'inflated', limit: number): HttpError {
  const what = kind === 'raw' ? 'the request body' : 'the decompressed request body';
  return new HttpError(
    413,
    new TidemarkError(
      'INVALID_ARGUMENT',
      'body_too_large',
      `${what} is larger than ${limit} bytes; split the request`,
      { field: 'body', limit },
    ),
    kind,
  );
}

/**
 * Reads the whole body, decoding it per Content-Encoding. Rejects with HttpError (413 too large, 415
 * unknown encoding, 400 corrupt compressed data, 408 not complete by the deadline) or ClientGone. On an
 * HttpError the request stream is paused and left unread: answer with `Connection: close`.
 */
export function readBody(req: IncomingMessage, options: ReadBodyOptions): Promise<Buffer> {
  const encoding = bodyEncoding(req.headers['content-encoding']);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > options.maxBytes) {
    return Promise.reject(tooLarge('raw', options.maxBytes));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let raw = 0;
    let decodedBytes = 0;
    let settled = false;
    let decoder: Gunzip | Inflate | undefined;
    const timer = setTimeout(
      () =>
        fail(
          new HttpError(
            408,
            new TidemarkError(
              'DEADLINE_EXCEEDED',
              'body_timeout',
              'the request body did not arrive before the request deadline',
            ),
          ),
        ),
      Math.max(0, options.deadline - Date.now()),
    );

    const cleanup = (): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('aborted', onGone);
      req.off('close', onClose);
      req.off('error', onGone);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      req.pause();
      if (decoder !== undefined) {
        decoder.removeAllListeners('data');
        decoder.on('error', () => {});
        decoder.destroy();
      }
      chunks.length = 0;
      reject(err);
    };
    const finish = (): void => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, decodedBytes));
    };
    const onGone = (): void => fail(new ClientGone());
    const onClose = (): void => {
      if (!req.complete) fail(new ClientGone());
    };
    const onData = (chunk: Buffer): void => {
      if (settled) return;
      raw += chunk.length;
      if (raw > options.maxBytes) {
        fail(tooLarge('raw', options.maxBytes));
        return;
      }
      if (decoder === undefined) {
        decodedBytes += chunk.length;
        chunks.push(chunk);
      } else if (!decoder.write(chunk)) {
        req.pause();
        decoder.once('drain', () => {
          if (!settled) req.resume();
        });
      }
    };
    const onEnd = (): void => {
      if (decoder === undefined) finish();
      else decoder.end();
    };

    if (encoding !== 'identity') {
      const d = encoding === 'gzip' ? createGunzip() : createInflate();
      decoder = d;
      d.on('data', (out: Buffer) => {
        if (settled) return;
        decodedBytes += out.length;
        if (decodedBytes > options.maxDecodedBytes)
          return fail(tooLarge('inflated', options.maxDecodedBytes));
        chunks.push(out);
      });
      d.on('end', finish);
      d.on('error', (err) =>
        fail(
          new HttpError(
            400,
            new TidemarkError(
              'INVALID_ARGUMENT',
              'body_encoding_invalid',
              `the ${encoding} body could not be decoded: ${err.message}`,
              { field: 'body' },
            ),
          ),
        ),
      );
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('aborted', onGone);
    req.on('close', onClose);
    req.on('error', onGone);
  });
}
