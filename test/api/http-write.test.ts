import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { json, startServer, stored, type TestServer } from './helpers.js';

let srv: TestServer;
beforeEach(async () => {
  srv = await startServer();
});
afterEach(async () => {
  await srv.close();
});

function write(
  body: string | Uint8Array,
  query = '',
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${srv.url}/write${query}`, { method: 'POST', headers, body });
}

describe('POST /write', () => {
  test('204 on success; each field is a series <measurement>_<field>', async () => {
    const res = await write('cpu,host=a usage_idle=98.5,usage_user=1.2 1700000000000000000\n');
    expect(res.status).toBe(204);
    expect(await res.text()).toBe('');
    expect(await stored(srv.cluster, 'cpu_usage_idle')).toEqual({ 'host=a': [[1700000000000, 98.5]] });
    expect(await stored(srv.cluster, 'cpu_usage_user')).toEqual({ 'host=a': [[1700000000000, 1.2]] });
  });

  test.each([
    ['s', '1700000000', 1700000000000],
    ['ms', '1700000000123', 1700000000123],
    ['ns', '1700000000123456789', 1700000000123],
    ['u', '1700000000123456', 1700000000123],
  ])('precision=%s', async (precision, ts, expected) => {
    const res = await write(`m,host=a v=1 ${ts}\n`, `?precision=${precision}`);
    expect(res.status).toBe(204);
    expect(await stored(srv.cluster, 'm_v')).toEqual({ 'host=a': [[expected, 1]] });
  });

  test('db, rp, u, p are accepted and ignored', async () => {
    const res = await write('m v=2 1700000000\n', '?db=telegraf&rp=autogen&u=user&p=secret&precision=s');
    expect(res.status).toBe(204);
    expect(await stored(srv.cluster, 'm_v')).toEqual({ '': [[1700000000000, 2]] });
  });

  test('a point without a timestamp gets the server time', async () => {
    expect((await write('m v=3\n')).status).toBe(204);
    expect(await stored(srv.cluster, 'm_v')).toEqual({ '': [[1_700_000_000_000, 3]] });
  });

  test('invalid precision → 400, Influx-shaped error, nothing read or written', async () => {
    const res = await write('m v=1\n', '?precision=fortnight');
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(typeof body.error).toBe('string');
    expect(body.code).toBe('INVALID_ARGUMENT');
    expect(body.reason).toBe('precision_invalid');
    expect(body.field).toBe('precision');
    expect(srv.cluster.writesApplied).toBe(0);
  });

  test('partial write → 400 {error: "partial write: ..."}; the good lines are stored', async () => {
    const body = ['m,host=a v=1 1', 'm,host=b v=oops 2', 'bad line', 'm,host=c v=3 3'].join('\n');
    const res = await write(body, '?precision=s');
    expect(res.status).toBe(400);
    const out = await json(res);
    expect(out.error).toMatch(/^partial write: line 2: .* dropped=2$/);
    expect(out.accepted).toBe(2);
    expect(out.rejected).toBe(2);
    expect(out.errors.map((e: { line: number }) => e.line)).toEqual([2, 3]);
    expect(await stored(srv.cluster, 'm_v')).toEqual({ 'host=a': [[1000, 1]], 'host=c': [[3000, 3]] });
  });

  test('every line bad → 400 without the partial-write prefix, nothing written', async () => {
    const res = await write('nofields\n');
    expect(res.status).toBe(400);
    const out = await json(res);
    expect(out.error).toMatch(/^line 1: .* dropped=1$/);
    expect(srv.cluster.writesApplied).toBe(0);
  });

  test('an empty body → 204', async () => {
    expect((await write('')).status).toBe(204);
    expect((await write('# just a comment\n\n')).status).toBe(204);
  });

  test('gzip body (Content-Encoding: gzip, as Telegraf sends)', async () => {
    const lines = Array.from(
      { length: 500 },
      (_, i) => `disk,host=h${i % 7},path=/ used=${i}i ${1700000000 + i}`,
    );
    const res = await write(gzipSync(lines.join('\n')), '?precision=s', { 'content-encoding': 'gzip' });
    expect(res.status).toBe(204);
    expect(srv.cluster.sampleCount()).toBe(500);
  });

  test('a corrupt gzip body → 400', async () => {
    const gz = gzipSync('m v=1 1\n');
    gz[gz.length - 6] ^= 0xff; // break the CRC
    const res = await write(gz, '', { 'content-encoding': 'gzip' });
    expect(res.status).toBe(400);
    expect((await json(res)).reason).toBe('body_encoding_invalid');
    expect(srv.cluster.writesApplied).toBe(0);
  });

  test('an unknown Content-Encoding → 415', async () => {
    const res = await write('m v=1 1\n', '', { 'content-encoding': 'br' });
    expect(res.status).toBe(415);
    expect((await json(res)).reason).toBe('content_encoding_unsupported');
    expect(srv.cluster.writesApplied).toBe(0);
  });

  test('a Telegraf-like body (gzip, ns, tags, int/float/bool/string fields)', async () => {
    const t = 1700000000000000000n;
    const body = [
      `cpu,cpu=cpu0,host=telegraf-1 usage_idle=97.2,usage_system=1.1,usage_user=1.7 ${t}`,
      `mem,host=telegraf-1 available=6109745152i,used_percent=24.3,active=true ${t}`,
      `system,host=telegraf-1 load1=0.15,n_cpus=4i,uptime_format="1 day, 2:03" ${t}`,
      `net,host=telegraf-1,interface=eth0 bytes_recv=123456789u,err_in=0i ${t + 10_000_000_000n}`,
      '',
    ].join('\n');
    const res = await write(gzipSync(body), '?db=telegraf', {
      'content-encoding': 'gzip',
      'content-type': 'text/plain; charset=utf-8',
      'user-agent': 'Telegraf/1.30.0 Go/1.22.1',
    });
    expect(res.status).toBe(204);
    expect(await stored(srv.cluster, 'mem_active')).toEqual({ 'host=telegraf-1': [[1700000000000, 1]] });
    expect(await stored(srv.cluster, 'net_bytes_recv')).toEqual({
      'host=telegraf-1,interface=eth0': [[1700000010000, 123456789]],
    });
    expect(await stored(srv.cluster, 'system_uptime_format')).toEqual({});
    expect(srv.cluster.sampleCount()).toBe(3 + 3 + 2 + 2);
  });

  test('a TSBS-like body (cpu-only, ns timestamps, 10 hosts × 10 rows)', async () => {
    const lines: string[] = [];
    for (let r = 0; r < 10; r++) {
      for (let h = 0; h < 10; h++) {
        const ts = 1451606400000000000n + BigInt(r) * 10_000_000_000n;
        lines.push(
          `cpu,hostname=host_${h},region=eu-west-1,datacenter=eu-west-1b,rack=${h % 4},os=Ubuntu16.10,arch=x86,team=CHI,service=${h},service_version=0,service_environment=test usage_user=58i,usage_system=2i,usage_idle=24i,usage_nice=61i,usage_iowait=22i,usage_irq=63i,usage_softirq=6i,usage_steal=44i,usage_guest=80i,usage_guest_nice=38i ${ts}`,
        );
      }
    }
    const res = await write(`${lines.join('\n')}\n`);
    expect(res.status).toBe(204);
    expect(srv.cluster.sampleCount()).toBe(10 * 10 * 10);
    const s = await srv.cluster.select({
      metric: 'cpu_usage_user',
      matchers: [{ name: 'hostname', op: '=', value: 'host_0' }],
    });
    expect(s).toHaveLength(1);
    expect(Array.from(s[0].timestamps)).toEqual(
      Array.from({ length: 10 }, (_, r) => 1451606400000 + r * 10_000),
    );
    expect(Array.from(s[0].values)).toEqual(new Array(10).fill(58));
  });

  test('the exact TSBS line from the brief', async () => {
    const res = await write(
      'cpu,hostname=host_0,region=eu-west-1 usage_user=58i,usage_system=2i 1451606400000000000',
    );
    expect(res.status).toBe(204);
    expect(await stored(srv.cluster, 'cpu_usage_system')).toEqual({
      'hostname=host_0,region=eu-west-1': [[1451606400000, 2]],
    });
  });

  test('/api/v2/write is an alias', async () => {
    const res = await fetch(`${srv.url}/api/v2/write?org=o&bucket=b&precision=ms`, {
      method: 'POST',
      body: 'm v=5 1700000000000',
    });
    expect(res.status).toBe(204);
    expect(await stored(srv.cluster, 'm_v')).toEqual({ '': [[1700000000000, 5]] });
  });

  test('too many lines → 400 (whole request), nothing written', async () => {
    const small = await startServer({ limits: { maxLines: 3 } });
    try {
      const res = await fetch(`${small.url}/write`, {
        method: 'POST',
        body: 'm v=1 1\nm v=2 2\nm v=3 3\nm v=4 4\n',
      });
      expect(res.status).toBe(400);
      const body = await json(res);
      expect(body.reason).toBe('too_many_lines');
      expect(body.field).toBe('maxLines');
      expect(small.cluster.writesApplied).toBe(0);
    } finally {
      await small.close();
    }
  });

  test('samples the store refuses (too old) → 400 partial write', async () => {
    const s = await startServer({ clusterOptions: { store: { oooWindowMs: 1000 } } });
    try {
      expect(
        (await fetch(`${s.url}/write?precision=s`, { method: 'POST', body: 'm v=1 100000' })).status,
      ).toBe(204);
      const res = await fetch(`${s.url}/write?precision=s`, {
        method: 'POST',
        body: 'm v=2 1\nm v=3 100001',
      });
      expect(res.status).toBe(400);
      const body = await json(res);
      expect(body.error).toBe('partial write: 1 samples rejected by the store (too_old: 1) dropped=1');
      expect(body.samplesRejectedReasons).toEqual({ too_old: 1 });
      expect(await stored(s.cluster, 'm_v')).toEqual({
        '': [
          [100000000, 1],
          [100001000, 3],
        ],
      });
    } finally {
      await s.close();
    }
  });

  test('/ping → 204 and /query accepts CREATE DATABASE (Telegraf / TSBS start-up)', async () => {
    expect((await fetch(`${srv.url}/ping`)).status).toBe(204);
    const c = await fetch(`${srv.url}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'q=CREATE+DATABASE+%22telegraf%22',
    });
    expect(c.status).toBe(200);
    expect(await json(c)).toEqual({ results: [{ statement_id: 0 }] });
    const show = await fetch(`${srv.url}/query?q=SHOW%20DATABASES`);
    expect(show.status).toBe(200);
    const other = await fetch(`${srv.url}/query?q=SELECT%20*%20FROM%20cpu`);
    expect(other.status).toBe(400);
  });
});
