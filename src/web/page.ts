/**
 * The built-in web page served at `/` (docs/operations.md, "The web page"): the cluster as this node sees it
 * (refreshed from `/api/status`) and a query box that calls `/api/query` and draws the result as an SVG line
 * chart. One self-contained document: no build step, no external fetch (its Content-Security-Policy allows
 * only same-origin requests and this inline script and style, by hash). With auth on, a token typed into the
 * page is kept in sessionStorage and sent as `Authorization: Bearer`.
 *
 * The script is plain browser JavaScript in a string (the project's TypeScript has no DOM types); it is
 * exercised in a real headless Chromium by test/web/page.test.ts. It builds every element with
 * createElement/textContent, never innerHTML, so metric names and tag values cannot inject markup.
 */
import { createHash } from 'node:crypto';

const STYLE = `
:root { font: 14px/1.4 system-ui, sans-serif; color: #1d2733; background: #f6f7f9; }
body { margin: 0 auto; max-width: 1100px; padding: 12px 20px 40px; }
h1 { font-size: 20px; margin: 8px 0; } h2 { font-size: 16px; margin: 20px 0 8px; }
header { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
header .grow { flex: 1; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 10px 14px; margin-top: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eef0f2; font-variant-numeric: tabular-nums; }
th { font-weight: 600; color: #52606d; }
.ok { color: #1a7f37; } .warn { color: #9a6700; } .bad { color: #cf222e; } .muted { color: #6e7781; }
form { display: flex; gap: 8px; flex-wrap: wrap; align-items: end; }
label { display: flex; flex-direction: column; font-size: 12px; color: #52606d; gap: 2px; }
input, select, button { font: inherit; padding: 4px 6px; }
button { cursor: pointer; }
#chart { width: 100%; height: auto; margin-top: 10px; }
#chart .axis { stroke: #8c959f; stroke-width: 1; }
#chart .grid { stroke: #eef0f2; stroke-width: 1; }
#chart text { font-size: 11px; fill: #52606d; }
#chart path.series { fill: none; stroke-width: 1.5; }
#legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin-top: 6px; font-size: 12px; }
#legend span.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
`;

const SCRIPT = `
'use strict';
const TOKEN_KEY = 'tidemark.token';
const COLORS = ['#0969da', '#cf222e', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#1b7c83', '#57606a'];
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
async function api(path, init) {
  const headers = Object.assign({ accept: 'application/json' }, (init && init.headers) || {});
  const t = token();
  if (t !== '') headers.authorization = 'Bearer ' + t;
  const res = await fetch(path, Object.assign({}, init || {}, { headers }));
  const text = await res.text();
  let body = null;
  try { body = text === '' ? null : JSON.parse(text); } catch { body = text; }
  if (!res.ok) {
    const err = body && body.error;
    const msg = err && typeof err === 'object' ? (err.message || err.reason || JSON.stringify(err)) : String(err || text);
    const hint = res.status === 401 || res.status === 403 ? ' (set a token with the needed role above)' : '';
    throw new Error(res.status + ': ' + msg + hint);
  }
  return body;
}

// ---------------------------------------------------------------- status

function healthOf(shard, local) {
  if (shard.leader === '') return ['no leader', 'bad'];
  if (local && local.commit - local.applied > 0) return ['lagging', 'warn'];
  return ['ok', 'ok'];
}

function renderStatus(s) {
  const node = s.node, map = s.shardMap;
  const local = new Map(node.replicas.map((r) => [r.shard, r]));
  const rows = map.shards.map((sh) => {
    const r = local.get(sh.shard);
    // The local replica may know a newer leader/term than the last observation in the map.
    const newer = r && r.leader !== '' && r.term >= sh.term;
    return { shard: sh.shard, leader: newer ? r.leader : sh.leader, term: newer ? r.term : sh.term,
      replicas: sh.replicas, local: r };
  });
  const ready = s.readiness.ready;
  const summary = $('summary');
  summary.replaceChildren(
    el('span', {}, 'node ', el('b', {}, node.nodeId), ' · ' + map.nodes.length + ' nodes · ' + map.shardCount +
      ' shards · replication ' + map.replication + ' · '),
    el('span', { class: ready ? 'ok' : 'bad', id: 'ready' }, ready ? 'ready' : 'not ready: ' + s.readiness.reasons.join('; ')),
    el('span', { class: 'muted' }, ' · updated ' + new Date(s.time).toLocaleTimeString()),
  );
  const nodeRows = map.nodes.map((id) => el('tr', {},
    el('td', {}, id + (id === node.nodeId ? ' (this node)' : '')),
    el('td', {}, rows.filter((x) => x.replicas.includes(id)).length),
    el('td', {}, rows.filter((x) => x.leader === id).length),
  ));
  $('nodes').replaceChildren(el('tr', {}, el('th', {}, 'node'), el('th', {}, 'replicas'), el('th', {}, 'leading')), ...nodeRows);
  const shardRows = rows.map((x) => {
    const [h, cls] = healthOf(x, x.local);
    return el('tr', { 'data-shard': x.shard },
      el('td', {}, x.shard),
      el('td', {}, x.leader || '-'),
      el('td', {}, x.term),
      el('td', {}, x.replicas.join(', ')),
      el('td', {}, x.local ? x.local.role : '-'),
      el('td', {}, x.local ? x.local.commit : '-'),
      el('td', {}, x.local ? x.local.applied : '-'),
      el('td', {}, x.local ? Math.max(0, x.local.commit - x.local.applied) : '-'),
      el('td', { class: cls }, h),
    );
  });
  $('shards').replaceChildren(el('tr', {}, ...['shard', 'leader', 'term', 'replicas', 'local role', 'commit',
    'applied', 'lag', 'health'].map((h) => el('th', {}, h))), ...shardRows);
}

async function refresh() {
  try {
    renderStatus(await api('/api/status'));
    $('status-error').textContent = '';
  } catch (e) {
    $('status-error').textContent = 'status: ' + e.message;
  }
}

// ---------------------------------------------------------------- query + chart

function parseTags(text) {
  const tags = {};
  for (const part of text.split(',')) {
    const p = part.trim();
    if (p === '') continue;
    const eq = p.indexOf('=');
    if (eq <= 0) throw new Error('tags: expected key=value[,key=value], got ' + JSON.stringify(p));
    tags[p.slice(0, eq).trim()] = p.slice(eq + 1).trim();
  }
  return tags;
}

function label(r) {
  const tags = Object.entries(r.tags || {}).map(([k, v]) => k + '=' + v).join(',');
  return r.metric + (tags ? '{' + tags + '}' : '');
}

function fmt(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  return String(Math.round(v * 1000) / 1000);
}

function drawChart(results) {
  const W = 900, H = 320, L = 60, R = 12, T = 10, B = 28;
  const chart = $('chart');
  chart.replaceChildren();
  const series = results.map((r) => Object.entries(r.dps)
    .map(([t, v]) => [Number(t), typeof v === 'number' ? v : NaN])
    .sort((a, b) => a[0] - b[0]));
  let t0 = Infinity, t1 = -Infinity, v0 = Infinity, v1 = -Infinity;
  for (const pts of series) for (const [t, v] of pts) {
    t0 = Math.min(t0, t); t1 = Math.max(t1, t);
    if (Number.isFinite(v)) { v0 = Math.min(v0, v); v1 = Math.max(v1, v); }
  }
  if (!Number.isFinite(t0) || !Number.isFinite(v0)) {
    chart.append(svg('text', { x: L, y: H / 2 }, 'no data'));
    $('legend').replaceChildren();
    return;
  }
  if (t1 === t0) { t0 -= 1000; t1 += 1000; }
  if (v1 === v0) { const d = Math.abs(v0) * 0.1 || 1; v0 -= d; v1 += d; }
  // Round the value axis out to a 'nice' step (1, 2 or 5 times a power of ten) so the labels read well.
  const raw = (v1 - v0) / 4, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  v0 = Math.floor(v0 / step) * step; v1 = Math.ceil(v1 / step) * step;
  const ticks = Math.round((v1 - v0) / step);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  for (let i = 0; i <= ticks; i++) {
    const v = v0 + step * i;
    chart.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    chart.append(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmt(v)));
  }
  const span = t1 - t0;
  for (let i = 0; i <= 4; i++) {
    const t = t0 + (span * i) / 4;
    const d = new Date(t);
    const text = span > 2 * 86400000 ? d.toLocaleDateString() + ' ' + d.toLocaleTimeString() : d.toLocaleTimeString();
    chart.append(svg('text', { x: x(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, text));
  }
  chart.append(svg('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }));
  chart.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const legend = [];
  series.forEach((pts, i) => {
    const color = COLORS[i % COLORS.length];
    let d = '', pen = 'M';
    for (const [t, v] of pts) {
      if (!Number.isFinite(v)) { pen = 'M'; continue; }
      d += pen + x(t).toFixed(1) + ',' + y(v).toFixed(1) + ' ';
      pen = 'L';
    }
    const path = svg('path', { class: 'series', d: d.trim(), stroke: color, 'data-points': pts.length });
    path.append(svg('title', {}, label(results[i])));
    chart.append(path);
    // A style property, not a style attribute: the page's CSP allows no inline style attributes.
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = color;
    legend.push(el('span', {}, swatch, label(results[i])));
  });
  $('legend').replaceChildren(...legend);
}

async function runQuery(ev) {
  ev.preventDefault();
  const out = $('query-status');
  try {
    const metric = $('metric').value.trim();
    if (metric === '') throw new Error('metric: required');
    const q = { aggregator: $('aggregator').value, metric, tags: parseTags($('tags').value) };
    const ds = $('downsample').value.trim();
    if (ds !== '') q.downsample = ds;
    const body = { start: $('start').value.trim() || '1h-ago', msResolution: true, queries: [q] };
    const end = $('end').value.trim();
    if (end !== '') body.end = end;
    out.textContent = 'running…';
    const started = performance.now();
    const results = await api('/api/query', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body) });
    drawChart(results);
    const points = results.reduce((a, r) => a + Object.keys(r.dps).length, 0);
    out.textContent = results.length + ' series, ' + points + ' points in ' + Math.round(performance.now() - started) + ' ms';
    out.className = 'muted';
  } catch (e) {
    out.textContent = e.message;
    out.className = 'bad';
  }
}

async function loadAggregators() {
  const sel = $('aggregator');
  try {
    const names = await api('/api/aggregators');
    if (Array.isArray(names) && names.length > 0) {
      const current = sel.value;
      sel.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
      sel.value = names.includes(current) ? current : 'sum';
    }
  } catch {
    // keep the built-in list (e.g. no token yet)
  }
}

$('token').value = token();
$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  if (t === '') sessionStorage.removeItem(TOKEN_KEY); else sessionStorage.setItem(TOKEN_KEY, t);
  refresh();
  loadAggregators();
});
$('query-form').addEventListener('submit', runQuery);
const every = Number(new URLSearchParams(location.search).get('refresh')) || 2000;
refresh();
loadAggregators();
setInterval(refresh, Math.max(250, every));
`;

const hash = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Only this document's own script and style run; requests go to the serving node only. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${hash(SCRIPT)}`,
  `style-src ${hash(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tidemark</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>Tidemark</h1>
  <div class="grow" id="summary">loading…</div>
  <form id="token-form" autocomplete="off">
    <label>bearer token (kept in this tab only)<input id="token" type="password" size="24"></label>
    <button type="submit" id="token-save">use</button>
  </form>
</header>
<div class="bad" id="status-error"></div>
<section>
  <h2>Nodes</h2>
  <table id="nodes"></table>
  <h2>Shards</h2>
  <table id="shards"></table>
</section>
<section>
  <h2>Query</h2>
  <form id="query-form">
    <label>metric<input id="metric" required size="24" placeholder="cpu_usage"></label>
    <label>tags<input id="tags" size="24" placeholder="host=*,dc=eu|us"></label>
    <label>aggregator<select id="aggregator">
      <option>sum</option><option>avg</option><option>min</option><option>max</option><option>count</option>
      <option>p95</option><option>none</option>
    </select></label>
    <label>downsample<input id="downsample" size="10" placeholder="1m-avg"></label>
    <label>start<input id="start" size="12" value="1h-ago"></label>
    <label>end<input id="end" size="12" placeholder="now"></label>
    <button type="submit" id="run">run</button>
  </form>
  <div id="query-status" class="muted"></div>
  <svg id="chart" viewBox="0 0 900 320" role="img" aria-label="query result"></svg>
  <div id="legend"></div>
</section>
<script>${SCRIPT}</script>
</body>
</html>
`;
