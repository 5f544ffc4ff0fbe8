/**
 * Two small SVG charts for the peers benchmark, without dependencies: ingest rate over time (one line per
 * system) and query latency per shape (p50 bars with a p99 mark, log scale). Pure: returns SVG text.
 */

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];
const W = 760;
const H = 360;
const M = { l: 70, r: 170, t: 30, b: 50 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v: number) =>
  v >= 1e6
    ? `${(v / 1e6).toFixed(1)}M`
    : v >= 1e3
      ? `${(v / 1e3).toFixed(0)}k`
      : `${Math.round(v * 100) / 100}`;

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function frame(title: string, xLabel: string, yLabel: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13">${esc(title)}</text>`,
    `<text x="${M.l + (W - M.l - M.r) / 2}" y="${H - 8}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(14 ${M.t + (H - M.t - M.b) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** `series`: system → [seconds, samples/s] points. */
export function ingestChart(title: string, series: Record<string, [number, number][]>): string {
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const all = Object.values(series).flat();
  const xMax = niceMax(Math.max(0, ...all.map((p) => p[0])));
  const yMax = niceMax(Math.max(0, ...all.map((p) => p[1])));
  const x = (v: number) => M.l + (v / xMax) * pw;
  const y = (v: number) => M.t + ph - (v / yMax) * ph;
  const body: string[] = [
    `<line x1="${M.l}" y1="${M.t + ph}" x2="${M.l + pw}" y2="${M.t + ph}" stroke="black"/>`,
    `<line x1="${M.l}" y1="${M.t}" x2="${M.l}" y2="${M.t + ph}" stroke="black"/>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const yv = (yMax * i) / 5;
    const xv = (xMax * i) / 5;
    body.push(
      `<line x1="${M.l}" y1="${y(yv)}" x2="${M.l + pw}" y2="${y(yv)}" stroke="#ddd"/>`,
      `<text x="${M.l - 6}" y="${y(yv) + 4}" text-anchor="end">${fmt(yv)}</text>`,
      `<text x="${x(xv)}" y="${M.t + ph + 16}" text-anchor="middle">${fmt(xv)}</text>`,
    );
  }
  Object.entries(series).forEach(([name, pts], k) => {
    const color = COLORS[k % COLORS.length]!;
    const d = pts.map(([a, b], i) => `${i === 0 ? 'M' : 'L'}${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ');
    if (d) body.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    body.push(
      `<rect x="${M.l + pw + 14}" y="${M.t + k * 18}" width="12" height="12" fill="${color}"/>`,
      `<text x="${M.l + pw + 32}" y="${M.t + k * 18 + 10}">${esc(name)}</text>`,
    );
  });
  return frame(title, 'seconds since the start of the load', 'acknowledged samples/s', body);
}

/** `lat`: system → shape → {p50, p99} in ms. */
export function latencyChart(
  title: string,
  shapes: readonly string[],
  lat: Record<string, Record<string, { p50: number; p99: number }>>,
): string {
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const systems = Object.keys(lat);
  const values = systems.flatMap((s) =>
    shapes.flatMap((q) => [lat[s]?.[q]?.p50 ?? 0, lat[s]?.[q]?.p99 ?? 0]),
  );
  const pos = values.filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...pos, 1)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...pos, 10)));
  const y = (v: number) =>
    M.t + ph - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / Math.log10(hi / lo)) * ph;
  const body: string[] = [
    `<line x1="${M.l}" y1="${M.t + ph}" x2="${M.l + pw}" y2="${M.t + ph}" stroke="black"/>`,
    `<line x1="${M.l}" y1="${M.t}" x2="${M.l}" y2="${M.t + ph}" stroke="black"/>`,
  ];
  for (let e = Math.log10(lo); e <= Math.log10(hi); e++) {
    body.push(
      `<line x1="${M.l}" y1="${y(10 ** e)}" x2="${M.l + pw}" y2="${y(10 ** e)}" stroke="#ddd"/>`,
      `<text x="${M.l - 6}" y="${y(10 ** e) + 4}" text-anchor="end">${fmt(10 ** e)}</text>`,
    );
  }
  const group = pw / Math.max(1, shapes.length);
  const bw = (group * 0.8) / Math.max(1, systems.length);
  shapes.forEach((q, i) => {
    body.push(
      `<text x="${M.l + group * (i + 0.5)}" y="${M.t + ph + 16}" text-anchor="middle" font-size="9">${esc(q)}</text>`,
    );
    systems.forEach((s, k) => {
      const v = lat[s]?.[q];
      if (!v) return;
      const x0 = M.l + group * i + group * 0.1 + k * bw;
      const color = COLORS[k % COLORS.length]!;
      body.push(
        `<rect x="${x0.toFixed(1)}" y="${y(v.p50).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(M.t + ph - y(v.p50)).toFixed(1)}" fill="${color}"><title>${esc(s)} ${esc(q)} p50 ${v.p50} ms</title></rect>`,
        `<line x1="${x0.toFixed(1)}" y1="${y(v.p99).toFixed(1)}" x2="${(x0 + bw - 2).toFixed(1)}" y2="${y(v.p99).toFixed(1)}" stroke="black" stroke-width="2"><title>${esc(s)} ${esc(q)} p99 ${v.p99} ms</title></line>`,
      );
    });
  });
  systems.forEach((s, k) => {
    body.push(
      `<rect x="${M.l + pw + 14}" y="${M.t + k * 18}" width="12" height="12" fill="${COLORS[k % COLORS.length]}"/>`,
      `<text x="${M.l + pw + 32}" y="${M.t + k * 18 + 10}">${esc(s)}</text>`,
    );
  });
  body.push(
    `<text x="${M.l + pw + 14}" y="${M.t + systems.length * 18 + 14}">bar: p50, black mark: p99</text>`,
  );
  return frame(title, 'query shape', 'latency, ms (log scale)', body);
}
