/**
 * The one adapter between protobuf-es v2 service descriptors (generated `*_pb.ts`) and grpc-js.
 *
 *  - `serviceDefinition(service)`: a grpc-js ServiceDefinition: path `/<package>.<Service>/<Method>`,
 *    (de)serialization with toBinary/fromBinary, streaming flags from `methodKind`.
 *  - `addService(server, service, impl)`: registers typed handlers (unary → Promise, server-streaming →
 *    async iterable of responses, client-streaming → Promise from an async iterable of requests, bidi →
 *    async iterable in, async iterable out), with the deadline and cancellation in a call context.
 *  - `createClient(service, address)`: a typed client (unary → Promise, server-streaming → async iterable,
 *    client-streaming → writable call with a response promise, bidi → duplex call).
 *
 * Errors cross in exactly one place (./errors.ts): whatever a handler throws becomes a gRPC status with
 * the `tidemark-error-bin` trailer, and every client-side failure becomes a TidemarkError.
 * Message sizes are bounded on both ends (`maxMessageBytes`, default 16 MiB).
 */

import http2 from 'node:http2';
import type { Readable } from 'node:stream';
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { TidemarkError } from '../errors/index.js';
import { fromGrpcError, toGrpcError } from './errors.js';

export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

type In<M extends DescMethod> = MessageShape<M['input']>;
type InInit<M extends DescMethod> = MessageInitShape<M['input']>;
type Out<M extends DescMethod> = MessageShape<M['output']>;
type OutInit<M extends DescMethod> = MessageInitShape<M['output']>;

// ---------------------------------------------------------------------------------------------------------
// Service definition

/**
 * A message already in wire form, from a hand-written encoder of a hot message (src/transport/write-codec.ts):
 * sent as is instead of being encoded by reflection. Pass it where the message is expected with `asMessage`.
 */
export class PreEncoded {
  constructor(readonly bytes: Uint8Array) {}
}

/** `bytes` (the wire form of a message of the method's input type) as that method's argument. */
export function asMessage<T>(bytes: Uint8Array): T {
  return new PreEncoded(bytes) as unknown as T;
}

function serializer(schema: DescMessage): (msg: unknown) => Buffer {
  return (msg) => {
    if (msg instanceof PreEncoded) {
      return Buffer.from(msg.bytes.buffer, msg.bytes.byteOffset, msg.bytes.byteLength);
    }
    const bytes = toBinary(schema, create(schema, msg as MessageInitShape<DescMessage>));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(schema: DescMessage): (buf: Buffer) => unknown {
  // A plain Uint8Array view (no copy): bytes fields then decode as Uint8Array, not Buffer.
  return (buf) => fromBinary(schema, new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
}

function isRequestStream(m: DescMethod): boolean {
  return m.methodKind === 'client_streaming' || m.methodKind === 'bidi_streaming';
}

function isResponseStream(m: DescMethod): boolean {
  return m.methodKind === 'server_streaming' || m.methodKind === 'bidi_streaming';
}

/** The gRPC path of a method: `/<package>.<Service>/<Method>`. */
export function methodPath(service: DescService, method: DescMethod): string {
  return `/${service.typeName}/${method.name}`;
}

/** Hands the request's wire bytes to the handler as they are (see AddServiceOptions.rawRequests). */
function rawDeserializer(buf: Buffer): unknown {
  return new PreEncoded(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
}

/** A grpc-js service definition (keyed by the methods' local names) for a protobuf-es service. */
export function serviceDefinition(
  service: DescService,
  rawRequests: readonly string[] = [],
): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    const raw = rawRequests.includes(m.localName);
    def[m.localName] = {
      path: methodPath(service, m),
      requestStream: isRequestStream(m),
      responseStream: isResponseStream(m),
      requestSerialize: serializer(m.input),
      requestDeserialize: raw ? rawDeserializer : deserializer(m.input),
      responseSerialize: serializer(m.output),
      responseDeserialize: deserializer(m.output),
      originalName: m.name,
    };
  }
  return def as grpc.ServiceDefinition;
}

// ---------------------------------------------------------------------------------------------------------
// Server

/** What a handler knows about its call. */
export interface CallContext {
  /** Absolute deadline (ms since the epoch), if the client set one. */
  readonly deadline: number | undefined;
  /** Aborted when the client cancels, the deadline passes or the connection drops. */
  readonly signal: AbortSignal;
  readonly metadata: grpc.Metadata;
  /** The peer's address. */
  readonly peer: string;
  /** Sends response headers now (for streaming responses: lets the client see the stream is up). */
  sendHeaders(): void;
}

export type MethodHandler<M extends DescMethod> = M['methodKind'] extends 'unary'
  ? (request: In<M>, ctx: CallContext) => Promise<OutInit<M>> | OutInit<M>
  : M['methodKind'] extends 'server_streaming'
    ? (request: In<M>, ctx: CallContext) => AsyncIterable<OutInit<M>>
    : M['methodKind'] extends 'client_streaming'
      ? (requests: AsyncIterable<In<M>>, ctx: CallContext) => Promise<OutInit<M>>
      : (requests: AsyncIterable<In<M>>, ctx: CallContext) => AsyncIterable<OutInit<M>>;

/** One handler per method, keyed by the method's local name (e.g. `write`, `shardMap`). */
export type ServiceImplementation<S extends DescService> = {
  [K in keyof S['method']]: MethodHandler<S['method'][K]>;
};

interface AnyServerCall {
  metadata: grpc.Metadata;
  getDeadline(): grpc.Deadline;
  getPeer(): string;
  sendMetadata(md: grpc.Metadata): void;
  on(event: 'cancelled', fn: () => void): unknown;
  cancelled: boolean;
}

/** A call's context, plus `finish()`: the handler has answered, so a later close is not a cancellation. */
type ServerContext = CallContext & { finish(): void };

/**
 * grpc-js reports every call's stream close as "cancelled", answered or not. Aborting then would cost each
 * answered call an abort (a DOMException with its stack, and the abort listeners) for nothing; so the signal
 * is made only when a handler asks for it, and a call that has answered is never aborted.
 */
function context(call: AnyServerCall): ServerContext {
  let controller: AbortController | undefined;
  let cancelled = call.cancelled;
  let finished = false;
  if (!cancelled) {
    call.on('cancelled', () => {
      if (finished) return;
      cancelled = true;
      controller?.abort();
    });
  }
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  let headersSent = false;
  return {
    deadline: Number.isFinite(ms) ? ms : undefined,
    get signal(): AbortSignal {
      if (controller === undefined) {
        controller = new AbortController();
        if (cancelled) controller.abort();
      }
      return controller.signal;
    },
    metadata: call.metadata,
    peer: call.getPeer(),
    sendHeaders() {
      if (headersSent) return;
      headersSent = true;
      call.sendMetadata(new grpc.Metadata());
    },
    finish() {
      finished = true;
    },
  };
}

/** Runs a handler that answers once (unary, client-streaming) and sends its response or its error. */
function answerOnce(
  ctx: ServerContext,
  callback: grpc.sendUnaryData<unknown>,
  output: DescMessage,
  run: () => unknown,
): void {
  Promise.resolve()
    .then(run)
    .then(
      (out) => {
        ctx.finish();
        callback(null, create(output, out as MessageInitShape<DescMessage>));
      },
      (err) => {
        ctx.finish();
        callback(toGrpcError(err));
      },
    );
}

/** The request stream of a call as an async iterable; ends (throws CLOSED) when the call is cancelled. */
async function* requests<T>(call: Readable, signal: AbortSignal): AsyncGenerator<T> {
  try {
    // Not destroyed when the requests end: a duplex call still has its responses and status to send.
    for await (const m of call.iterator({ destroyOnReturn: false })) yield m as T;
  } catch (err) {
    if (signal.aborted) throw new TidemarkError('CLOSED', 'cancelled', 'the call was cancelled');
    throw err;
  }
  if (signal.aborted) throw new TidemarkError('CLOSED', 'cancelled', 'the call was cancelled');
}

function drained(stream: NodeJS.WritableStream, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.removeListener('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    stream.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

async function writeAll(
  call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
  out: AsyncIterable<unknown>,
  schema: DescMessage,
  signal: AbortSignal,
): Promise<void> {
  try {
    for await (const msg of out) {
      if (signal.aborted) return;
      if (!call.write(create(schema, msg as MessageInitShape<DescMessage>))) await drained(call, signal);
    }
    if (!signal.aborted) call.end();
  } catch (err) {
    if (!signal.aborted) call.emit('error', toGrpcError(err));
  }
}

export interface AddServiceOptions {
  /**
   * Runs before every handler (before a request stream is read); throwing (e.g. UNAUTHENTICATED,
   * PERMISSION_DENIED) ends the call with that error and the handler never runs.
   */
  authorize?: (method: DescMethod, ctx: CallContext) => unknown;
  /**
   * Methods (local names) whose handler decodes its own request: it receives a `PreEncoded` holding the
   * wire bytes instead of a protobuf-es message (a hand-written decoder for a hot message,
   * src/transport/write-codec.ts); for a streaming method, each request message.
   */
  rawRequests?: readonly string[];
}

/** Registers typed handlers for a protobuf-es service on a grpc-js server. */
export function addService<S extends DescService>(
  server: grpc.Server,
  service: S,
  impl: ServiceImplementation<S>,
  options: AddServiceOptions = {},
): void {
  const handlers: grpc.UntypedServiceImplementation = {};
  const table = impl as unknown as Record<string, (...args: unknown[]) => unknown>;
  const authorize = options.authorize;
  for (const m of service.methods) {
    const raw = table[m.localName];
    if (typeof raw !== 'function') throw new TypeError(`no handler for ${service.typeName}.${m.name}`);
    const h =
      authorize === undefined
        ? raw
        : (arg: unknown, ctx: CallContext) => {
            authorize(m, ctx);
            return raw(arg, ctx);
          };
    switch (m.methodKind) {
      case 'unary':
        handlers[m.localName] = (
          call: grpc.ServerUnaryCall<unknown, unknown>,
          callback: grpc.sendUnaryData<unknown>,
        ) => {
          const ctx = context(call);
          answerOnce(ctx, callback, m.output, () => h(call.request, ctx));
        };
        break;
      case 'server_streaming':
        handlers[m.localName] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
          const ctx = context(call);
          let out: AsyncIterable<unknown>;
          try {
            out = h(call.request, ctx) as AsyncIterable<unknown>;
          } catch (err) {
            call.emit('error', toGrpcError(err));
            return;
          }
          void writeAll(call, out, m.output, ctx.signal);
        };
        break;
      case 'client_streaming':
        handlers[m.localName] = (
          call: grpc.ServerReadableStream<unknown, unknown>,
          callback: grpc.sendUnaryData<unknown>,
        ) => {
          const ctx = context(call);
          answerOnce(ctx, callback, m.output, () => h(requests(call, ctx.signal), ctx));
        };
        break;
      case 'bidi_streaming':
        handlers[m.localName] = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
          const ctx = context(call);
          let out: AsyncIterable<unknown>;
          try {
            out = h(requests(call, ctx.signal), ctx) as AsyncIterable<unknown>;
          } catch (err) {
            call.emit('error', toGrpcError(err));
            return;
          }
          void writeAll(call, out, m.output, ctx.signal);
        };
        break;
    }
  }
  server.addService(serviceDefinition(service, options.rawRequests), handlers);
}

export interface ServerOptions {
  /** Largest message received or sent, in bytes (default 16 MiB). */
  maxMessageBytes?: number;
  /** Extra grpc-js server options. */
  grpcOptions?: grpc.ServerOptions;
}

/**
 * HTTP/2 receive windows. The protocol's default is 64 KiB per connection, shared by every stream on it: with
 * dozens of concurrent 20–100 KiB writes (or Raft appends) on one connection, senders stall until the receiver's
 * event loop gets round to a WINDOW_UPDATE, and a busy node is then bounded by its own loop latency, not by its
 * CPU (+30–40% SDK ingest when raised; docs/benchmarks.md). The windows also bound the bytes a peer can have in
 * flight towards us per connection.
 */
export const STREAM_WINDOW_BYTES = 1 << 20;
export const CONNECTION_WINDOW_BYTES = 8 << 20;

let serverWindowsInstalled = false;

/**
 * grpc-js has no server option for flow-control windows (only its client has `grpc-node.flow_control_window`),
 * so the http2 server factories it calls are wrapped, once, in a process that creates a gRPC server: each
 * HTTP/2 server gets the per-stream window in its SETTINGS, each session the connection window. Only servers
 * (node processes) install it; an SDK user's process is left alone.
 */
function installServerWindows(): void {
  if (serverWindowsInstalled) return;
  serverWindowsInstalled = true;
  type Factory = (opts?: http2.ServerOptions, ...rest: unknown[]) => http2.Http2Server;
  const mod = http2 as unknown as Record<'createServer' | 'createSecureServer', Factory>;
  for (const name of ['createServer', 'createSecureServer'] as const) {
    const original = mod[name];
    mod[name] = function (this: unknown, opts?: http2.ServerOptions, ...rest: unknown[]) {
      const settings = { initialWindowSize: STREAM_WINDOW_BYTES, ...opts?.settings };
      const server = original.call(this, { ...opts, settings }, ...rest);
      server.on('session', (session: http2.ServerHttp2Session) => {
        try {
          session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
        } catch {
          // a session already closing: nothing to widen
        }
      });
      return server;
    };
  }
}

/** A grpc-js server with bounded message sizes and widened HTTP/2 receive windows. */
export function createServer(options: ServerOptions = {}): grpc.Server {
  const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  installServerWindows();
  return new grpc.Server({
    'grpc.max_receive_message_length': max,
    'grpc.max_send_message_length': max,
    ...options.grpcOptions,
  });
}

/** Binds `address` (e.g. `127.0.0.1:0`) and resolves with the port bound. */
export function bindServer(
  server: grpc.Server,
  address: string,
  credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure(),
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port)));
  });
}

/** Stops accepting calls and waits for running ones (up to `graceMs`, then cancels them). */
export function shutdownServer(server: grpc.Server, graceMs = 1000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Client

export interface CallOptions {
  /** Relative deadline in ms (ignored if `deadline` is set). */
  timeoutMs?: number;
  /** Absolute deadline: ms since the epoch or a Date. */
  deadline?: number | Date;
  /** Cancels the call when aborted. */
  signal?: AbortSignal;
  metadata?: grpc.Metadata;
}

/** A client-streaming call: write requests, then `end()` resolves with the response. */
export interface ClientStreamCall<I, IInit, O> {
  /** Queues a request; false means the buffer is full: await `drained()` before writing more. */
  write(message: IInit | I): boolean;
  drained(): Promise<void>;
  /** Half-closes and resolves with the response (or rejects with a TidemarkError). */
  end(): Promise<O>;
  /** The response (settles when the call ends, even if `end()` was not called). */
  readonly response: Promise<O>;
  cancel(): void;
}

/** A bidi call: a writable request side and an async-iterable response side. */
export interface BidiCall<I, IInit, O> extends AsyncIterable<O> {
  write(message: IInit | I): boolean;
  drained(): Promise<void>;
  /** Half-closes the request side. */
  end(): void;
  cancel(): void;
  /** True once the server sent response headers (the stream is up); false if it ended before. */
  readonly opened: Promise<boolean>;
  /** Settles when the call ends: undefined for OK, else the error. Never rejects. */
  readonly closed: Promise<TidemarkError | undefined>;
}

export type ClientMethod<M extends DescMethod> = M['methodKind'] extends 'unary'
  ? (request: InInit<M> | In<M>, options?: CallOptions) => Promise<Out<M>>
  : M['methodKind'] extends 'server_streaming'
    ? (request: InInit<M> | In<M>, options?: CallOptions) => AsyncIterable<Out<M>>
    : M['methodKind'] extends 'client_streaming'
      ? (options?: CallOptions) => ClientStreamCall<In<M>, InInit<M>, Out<M>>
      : (options?: CallOptions) => BidiCall<In<M>, InInit<M>, Out<M>>;

export type ServiceClient<S extends DescService> = {
  [K in keyof S['method']]: ClientMethod<S['method'][K]>;
} & {
  /** The underlying grpc-js client (channel state, waitForReady). */
  readonly grpcClient: grpc.Client;
  /** Closes the channel. */
  close(): void;
};

export interface ClientOptions {
  /** Largest message sent or received, in bytes (default 16 MiB). */
  maxMessageBytes?: number;
  credentials?: grpc.ChannelCredentials;
  /** grpc-js channel reconnect backoff (defaults 100 ms initial, 2 s max). */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  /** Extra grpc-js channel options. */
  grpcOptions?: grpc.ChannelOptions;
  /** grpc-js client interceptors (e.g. one adding `authorization` metadata to every call). */
  interceptors?: grpc.Interceptor[];
}

function callOptions(o: CallOptions | undefined): grpc.CallOptions {
  const out: grpc.CallOptions = {};
  if (o?.deadline !== undefined) out.deadline = o.deadline;
  else if (o?.timeoutMs !== undefined) out.deadline = Date.now() + o.timeoutMs;
  return out;
}

function linkSignal(call: { cancel(): void }, signal: AbortSignal | undefined): void {
  if (signal === undefined) return;
  if (signal.aborted) call.cancel();
  else signal.addEventListener('abort', () => call.cancel(), { once: true });
}

/** Responses as an async iterable; leaving the loop early (break, throw) cancels the call. */
async function* responses<T>(call: AsyncIterable<unknown> & { cancel(): void }): AsyncGenerator<T> {
  let finished = false;
  try {
    for await (const m of call) yield m as T;
    finished = true;
  } catch (err) {
    finished = true;
    throw fromGrpcError(err);
  } finally {
    if (!finished) call.cancel();
  }
}

function waitDrain(stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.removeListener('drain', done);
      stream.removeListener('close', done);
      stream.removeListener('status', done);
      resolve();
    };
    stream.once('drain', done);
    stream.once('close', done);
    stream.once('status', done);
  });
}

/** A typed client for `service` at `address` (host:port). */
export function createClient<S extends DescService>(
  service: S,
  address: string,
  options: ClientOptions = {},
): ServiceClient<S> {
  const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const client = new grpc.Client(address, options.credentials ?? grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': max,
    'grpc.max_send_message_length': max,
    'grpc.initial_reconnect_backoff_ms': options.reconnectInitialMs ?? 100,
    'grpc.max_reconnect_backoff_ms': options.reconnectMaxMs ?? 2000,
    // Find a dead connection (peer host gone, half-open TCP) within ~15 s.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    // Receive window for responses (query streams, peer traffic); see STREAM_WINDOW_BYTES.
    'grpc-node.flow_control_window': CONNECTION_WINDOW_BYTES,
    ...options.grpcOptions,
    ...(options.interceptors === undefined ? {} : { interceptors: options.interceptors }),
  });
  const out: Record<string, unknown> = {
    grpcClient: client,
    close: () => client.close(),
  };
  for (const m of service.methods) {
    const path = methodPath(service, m);
    const ser = serializer(m.input);
    const de = deserializer(m.output);
    const md = (o: CallOptions | undefined) => o?.metadata ?? new grpc.Metadata();
    switch (m.methodKind) {
      case 'unary':
        out[m.localName] = (request: unknown, o?: CallOptions) =>
          new Promise((resolve, reject) => {
            const call = client.makeUnaryRequest(path, ser, de, request, md(o), callOptions(o), (err, res) =>
              err ? reject(fromGrpcError(err)) : resolve(res),
            );
            linkSignal(call, o?.signal);
          });
        break;
      case 'server_streaming':
        out[m.localName] = (request: unknown, o?: CallOptions) => {
          const call = client.makeServerStreamRequest(path, ser, de, request, md(o), callOptions(o));
          linkSignal(call, o?.signal);
          return responses(call);
        };
        break;
      case 'client_streaming':
        out[m.localName] = (o?: CallOptions) => {
          let call!: grpc.ClientWritableStream<unknown>;
          const response = new Promise((resolve, reject) => {
            call = client.makeClientStreamRequest(path, ser, de, md(o), callOptions(o), (err, res) =>
              err ? reject(fromGrpcError(err)) : resolve(res),
            );
          });
          // The caller may not await `response` until end(); keep an early failure from being unhandled.
          response.catch(() => {});
          call.on('error', () => {});
          linkSignal(call, o?.signal);
          const c: ClientStreamCall<unknown, unknown, unknown> = {
            write: (msg) => call.write(msg),
            drained: () => waitDrain(call),
            end: () => {
              call.end();
              return response;
            },
            response,
            cancel: () => call.cancel(),
          };
          return c;
        };
        break;
      case 'bidi_streaming':
        out[m.localName] = (o?: CallOptions) => {
          const call = client.makeBidiStreamRequest(path, ser, de, md(o), callOptions(o));
          linkSignal(call, o?.signal);
          let opened = false;
          const closed = new Promise<TidemarkError | undefined>((resolve) => {
            call.on('status', (s: grpc.StatusObject) =>
              resolve(s.code === grpc.status.OK ? undefined : fromGrpcError(s)),
            );
          });
          const openedP = new Promise<boolean>((resolve) => {
            call.once('metadata', () => {
              opened = true;
              resolve(true);
            });
            void closed.then(() => resolve(opened));
          });
          // Errors surface through `closed` and the response iterator; never as an unhandled event.
          call.on('error', () => {});
          const iterable = responses<unknown>(call);
          const c: BidiCall<unknown, unknown, unknown> = {
            write: (msg) => call.write(msg),
            drained: () => waitDrain(call),
            end: () => call.end(),
            cancel: () => call.cancel(),
            opened: openedP,
            closed,
            [Symbol.asyncIterator]: () => iterable[Symbol.asyncIterator](),
          };
          return c;
        };
        break;
    }
  }
  return out as ServiceClient<S>;
}
