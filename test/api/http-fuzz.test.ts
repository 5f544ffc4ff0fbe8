/**
 * Fuzz-ish: thousands of random and malformed bodies (random bytes, mutated line protocol and JSON, bad
 * gzip, odd parameters) to both write endpoints. The server must never answer 5xx, never crash, and keep
 * serving. Seeded: TIDEMARK_SEED=<n> npx vitest run test/api/http-fuzz.test.ts replays a run.
 */
import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Rng } from '../../src/util/random.js';
import { SEED, startServer, type TestServer } from './helpers.js';

const PER_ENDPOINT = 1200;
let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ limits: { maxBodyBytes: 64 * 1024, maxLines: 500, maxPoints: 500 } });
});
afterAll(async () => {
  await srv.close();
});

const LP_SEEDS = [
  'cpu,host=a usage_idle=98.5,usage_user=1.2 1700000000000000000',
  'cpu,hostname=host_0,region=eu-west-1 usage_user=58i,usage_system=2i 1451606400000000000',
  'mem,host=x used=1u,free=2i,ok=true,s="a string, with = and spaces" 1700000000',
  'weird\\ name,tag\\,k=v\\=x f=1e10 -1',
  '# comment\n\nm v=1',
];
const JSON_SEEDS = [
  '{"metric":"sys.cpu.user","timestamp":1346846400,"value":18,"tags":{"host":"web01"}}',
  '[{"metric":"a","timestamp":1346846400123,"value":"1.5","tags":{"k":1}},{"metric":"b","timestamp":"1","value":-1e3}]',
  '[{"metric":"", "timestamp": null, "value": "NaN", "tags": []}]',
];
const ALPHABET = ' ,=\\"\n\r\t#{}[]:-+.0123456789eEiutfTFnaxé\u0000\u00ff';

function randomBytes(r: Rng, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r.int(0, 256);
  return out;
}

function mutate(r: Rng, s: string): string {
  let t = s;
  const edits = r.int(1, 6);
  for (let e = 0; e < edits; e++) {
    const at = r.int(0, t.length + 1);
    switch (r.int(0, 5)) {
      case 0:
        t = t.slice(0, at) + t.slice(at + r.int(1, 5));
        break;
      case 1:
        t = t.slice(0, at) + r.pick(ALPHABET.split('')) + t.slice(at);
        break;
      case 2:
        t = t.slice(0, at);
        break;
      case 3:
        t = `${t}\n${t.slice(at)}`;
        break;
      default:
        t = t.slice(0, at) + String(r.int(-1e9, 1e9)) + t.slice(at);
    }
  }
  return t;
}

function randomJson(r: Rng, depth = 0): unknown {
  switch (r.int(0, depth > 2 ? 5 : 8)) {
    case 0:
      return null;
    case 1:
      return r.chance(0.5);
    case 2:
      return r.pick([0, -1, 1.5, 2 ** 32, 9_999_999_999_999, 1e308, -0, Number.MAX_SAFE_INTEGER]);
    case 3:
      return r.pick(['', 'm', 'sys.cpu', '__x', 'é', '1', 'NaN', 'x'.repeat(300)]);
    case 4:
      return {
        metric: r.pick(['m', '', 5]),
        timestamp: r.pick([1, '2', -3, 1.5]),
        value: r.pick([1, 'x', '3']),
      };
    case 5:
      return Array.from({ length: r.int(0, 6) }, () => randomJson(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (const k of ['metric', 'timestamp', 'value', 'tags', 'extra'])
        if (r.chance(0.7)) o[k] = randomJson(r, depth + 1);
      return o;
    }
  }
}

interface Case {
  body: Uint8Array;
  headers: Record<string, string>;
  query: string;
}

function makeCase(r: Rng, endpoint: 'write' | 'put'): Case {
  const seeds = endpoint === 'write' ? LP_SEEDS : JSON_SEEDS;
  let body: Uint8Array;
  switch (r.int(0, 6)) {
    case 0:
      body = randomBytes(r, r.int(0, 300));
      break;
    case 1:
      body = new TextEncoder().encode(
        Array.from({ length: r.int(1, 20) }, () => mutate(r, r.pick(seeds))).join(r.pick(['\n', '\r\n', ''])),
      );
      break;
    case 2:
      body = new TextEncoder().encode(JSON.stringify(randomJson(r)) ?? '');
      break;
    case 3:
      body = new TextEncoder().encode(r.pick(seeds).repeat(r.int(1, 3000)));
      break;
    case 4:
      body = new TextEncoder().encode(
        Array.from({ length: r.int(1, 50) }, () => r.pick(ALPHABET.split(''))).join(''),
      );
      break;
    default:
      body = new TextEncoder().encode(r.pick(seeds));
  }
  const headers: Record<string, string> = {};
  const enc = r.int(0, 10);
  if (enc === 0) {
    headers['content-encoding'] = 'gzip';
    body = gzipSync(body);
    const how = r.int(0, 3);
    if (how === 0) body = body.subarray(0, r.int(0, body.length));
    else if (how === 1) body[r.int(0, body.length)] ^= 1 << r.int(0, 8);
  } else if (enc === 1) {
    headers['content-encoding'] = r.pick(['gzip', 'deflate', 'x-gzip']);
  } else if (enc === 2) {
    headers['content-encoding'] = 'deflate';
    body = deflateSync(body);
  } else if (enc === 3) {
    headers['content-encoding'] = r.pick(['br', 'zstd', 'gzip, br', '']);
  }
  const params: string[] = [];
  if (r.chance(0.3)) params.push(`precision=${r.pick(['s', 'ms', 'us', 'ns', 'h', 'm', 'x', '', 'µ'])}`);
  if (r.chance(0.2)) params.push(r.pick(['summary', 'details', 'details=false', 'db=x&rp=y']));
  return { body, headers, query: params.length > 0 ? `?${params.join('&')}` : '' };
}

const ALLOWED = new Set([200, 204, 400, 413, 415]);

test(`${PER_ENDPOINT} malformed bodies per write endpoint: never a 5xx, never a crash (seed ${SEED})`, async () => {
  const r = new Rng(SEED ^ 0x4854);
  const cases: { path: string; c: Case }[] = [];
  for (let i = 0; i < PER_ENDPOINT; i++) {
    cases.push({ path: '/write', c: makeCase(r, 'write') });
    cases.push({ path: '/api/put', c: makeCase(r, 'put') });
  }
  const statuses = new Map<number, number>();
  let next = 0;
  const failures: string[] = [];
  async function worker(): Promise<void> {
    while (next < cases.length) {
      const i = next++;
      const { path, c } = cases[i];
      const res = await fetch(`${srv.url}${path}${c.query}`, {
        method: 'POST',
        headers: c.headers,
        body: c.body,
      });
      const text = await res.text();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (!ALLOWED.has(res.status))
        failures.push(`case ${i} ${path}${c.query}: ${res.status} ${text.slice(0, 200)}`);
      else if (text !== '') JSON.parse(text);
    }
  }
  try {
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(failures).toEqual([]);
  } catch (err) {
    console.error(
      `http fuzz failed with seed ${SEED} (rerun: TIDEMARK_SEED=${SEED} npx vitest run test/api/http-fuzz.test.ts)`,
    );
    throw err;
  }
  // Both success and rejection paths were exercised, and the server still serves.
  expect(statuses.get(204) ?? 0).toBeGreaterThan(0);
  expect(statuses.get(400) ?? 0).toBeGreaterThan(0);
  expect((await fetch(`${srv.url}/healthz`)).status).toBe(200);
  expect((await fetch(`${srv.url}/write`, { method: 'POST', body: 'ok v=1 1' })).status).toBe(204);
  console.log('fuzz statuses', Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])));
}, 120_000);
