/**
 * The built-in page in a real headless browser: Debian's chromium (installed by scripts/chromium.sh ensure
 * when missing) driven by playwright-core, against a real node (in-process, real LMDB and Raft) whose HTTP
 * API has bearer-token auth on. The test loads `/`, sees that the status needs a token, enters one, sees the
 * shard table, runs a query through the form and finds the chart's paths with the written points. Every
 * request the page makes goes to the node, and no script error or CSP violation happens.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpApi, type HttpApi } from '../../src/api/http.js';
import { resolveNodeConfig } from '../../src/cluster/config.js';
import { TidemarkNode } from '../../src/cluster/node.js';
import { Authenticator, parseTokenFile } from '../../src/security/auth.js';
import { freePort } from '../helpers/ports.js';
import { poll } from '../helpers/wait.js';

const CHROMIUM = '/usr/bin/chromium';

/**
 * Waits until the page-side expression `expr` is true, polling with page.evaluate. Not waitForFunction: given a
 * string, Playwright builds the predicate with `new Function` inside the page, which the page's Content
 * Security Policy (no 'unsafe-eval') refuses whenever the first check is false.
 */
function untilInPage(page: Page, expr: string): Promise<true> {
  return poll(async () => (await page.evaluate<boolean>(expr)) === true || undefined, expr, { everyMs: 25 });
}
const READ_TOKEN = 'page-read-token-0123456789';
const WRITE_TOKEN = 'page-write-token-0123456789';
const SHARDS = 2;
const HOSTS = 3;
const POINTS = 30;

describe('the web page in headless chromium', () => {
  const root = mkdtempSync(join(tmpdir(), 'tidemark-web-'));
  let node: TidemarkNode | undefined;
  let http: HttpApi | undefined;
  let context: BrowserContext | undefined;
  let page: Page;
  let base: string;
  const requests: string[] = [];
  const problems: string[] = [];

  beforeAll(async () => {
    // Installs Debian's chromium if missing (apt-get, cached .debs); returns at once when it is there.
    try {
      execFileSync('bash', [join(import.meta.dirname, '../../scripts/chromium.sh'), 'ensure'], {
        stdio: ['ignore', 'pipe', 'inherit'],
        timeout: 600_000,
      });
    } catch (err) {
      throw new Error(
        `scripts/chromium.sh ensure could not provide ${CHROMIUM} (see its message above): ${String(err)}`,
      );
    }
    const peer = await freePort();
    node = await TidemarkNode.start(
      resolveNodeConfig({
        nodeId: 'a',
        listen: { http: '127.0.0.1:0', grpc: '127.0.0.1:0', peer: `127.0.0.1:${peer}` },
        peers: `a=127.0.0.1:${peer}`,
        shards: SHARDS,
        replication: 1,
        dataDir: join(root, 'a'),
        raft: { tickMs: 20, electionTicks: 10, heartbeatTicks: 1 },
      }),
      { checkpointIntervalMs: 0, balancer: false },
    );
    const auth = new Authenticator({
      tokens: parseTokenFile(`${READ_TOKEN} read\n${WRITE_TOKEN} write`),
    });
    http = createHttpApi({ cluster: node, metrics: node.metrics.registry, auth });
    const bound = await http.listen('127.0.0.1', 0);
    base = `http://127.0.0.1:${bound.port}`;
    const ready = Date.now() + 30_000;
    while (!node.readiness().ready) {
      if (Date.now() > ready) throw new Error('node not ready');
      await new Promise((r) => setTimeout(r, 20));
    }
    // POINTS samples per host over the last 10 minutes.
    const now = Date.now();
    const lines: string[] = [];
    for (let h = 0; h < HOSTS; h++)
      for (let i = 0; i < POINTS; i++)
        lines.push(`web_cpu,host=h${h} value=${h * 10 + (i % 7)} ${now - 600_000 + i * 20_000}`);
    const res = await fetch(`${base}/write?precision=ms`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WRITE_TOKEN}` },
      body: lines.join('\n'),
    });
    expect(res.status).toBe(204);

    context = await chromium.launchPersistentContext(mkdtempSync(join(root, 'profile-')), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      // Expected: the 401s of the status polls before a token is given, the 400 of the bad query.
      const expected = /^Failed to load resource: .* status of (400|401) /.test(m.text());
      if (m.type() === 'error' && !expected) problems.push(`console: ${m.text()}`);
    });
  }, 600_000);

  afterAll(async () => {
    await context?.close();
    await http?.close(100);
    await node?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('shows the status after a token is given, runs a query and draws the chart', async () => {
    await page.goto(`${base}/?refresh=300`);
    expect(await page.title()).toBe('Tidemark');
    // Auth is on: without a token the status call is refused, and the page says why.
    await untilInPage(page, `document.getElementById('status-error').textContent.includes('401')`);

    await page.fill('#token', READ_TOKEN);
    await page.click('#token-save');
    await untilInPage(page, `document.querySelectorAll('#shards tr[data-shard]').length === ${SHARDS}`);
    expect(await page.evaluate(`sessionStorage.getItem('tidemark.token')`)).toBe(READ_TOKEN);
    await untilInPage(page, `document.getElementById('ready').textContent === 'ready'`);
    // Page-side code as strings: the project's TypeScript has no DOM types.
    const rows = await page.evaluate<string[][]>(
      `Array.from(document.querySelectorAll('#shards tr[data-shard]'), (tr) =>
        Array.from(tr.querySelectorAll('td'), (td) => td.textContent))`,
    );
    for (const [i, r] of rows.entries()) {
      // shard, leader, term, replicas, local role, commit, applied, lag, health
      expect(r[0]).toBe(String(i));
      expect(r[1]).toBe('a');
      expect(Number(r[2])).toBeGreaterThanOrEqual(1);
      expect(r[4]).toBe('leader');
      expect(Number(r[6])).toBeGreaterThanOrEqual(1);
      expect(r[8]).toBe('ok');
    }
    expect(await page.textContent('#nodes')).toContain('a (this node)');

    await page.fill('#metric', 'web_cpu_value');
    await page.fill('#tags', 'host=*');
    await page.selectOption('#aggregator', 'max');
    await page.fill('#downsample', '1m-max');
    await page.fill('#start', '1h-ago');
    await page.click('#run');
    await untilInPage(page, `document.querySelectorAll('#chart path.series').length === ${HOSTS}`);
    const paths = await page.evaluate<{ d: string; title: string }[]>(
      `Array.from(document.querySelectorAll('#chart path.series'), (p) =>
        ({ d: p.getAttribute('d') || '', title: p.textContent || '' }))`,
    );
    for (const p of paths) {
      // One point per 1-minute bucket that holds samples: 30 samples 20 s apart span 10 or 11 buckets.
      const points = p.d.split(/[ML]/).filter((s) => s.trim() !== '');
      expect(points.length, p.d).toBeGreaterThanOrEqual(10);
      for (const xy of points) expect(xy.trim()).toMatch(/^\d+(\.\d)?,\d+(\.\d)?$/);
    }
    expect(paths.map((p) => p.title).sort()).toEqual(
      Array.from({ length: HOSTS }, (_, h) => `web_cpu_value{host=h${h}}`),
    );
    expect(await page.textContent('#query-status')).toMatch(new RegExp(`^${HOSTS} series, \\d+ points`));
    expect(await page.textContent('#legend')).toContain('web_cpu_value{host=h0}');

    // A bad query is reported on the page, not thrown.
    await page.fill('#metric', 'web_cpu_value');
    await page.fill('#downsample', 'bogus');
    await page.click('#run');
    await untilInPage(page, `document.getElementById('query-status').className === 'bad'`);
    expect(await page.textContent('#query-status')).toMatch(/^400: /);

    expect(requests.length).toBeGreaterThan(0);
    for (const url of requests) expect(url.startsWith(`${base}/`), url).toBe(true);
    expect(problems).toEqual([]);
  });
});
