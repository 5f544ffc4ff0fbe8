/** The peers benchmark's SVG charts (bench/peers/svg.ts): one line / bar set per system, escaped text. */
import { expect, test } from 'vitest';
import { ingestChart, latencyChart } from '../../bench/peers/svg.js';

test('ingest chart: a titled SVG with one line and one legend entry per system', () => {
  const svg = ingestChart('Ingest <a & b>', {
    one: [
      [1, 100],
      [2, 250],
    ],
    two: [[1, 50]],
  });
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  expect(svg).toContain('<title>Ingest &lt;a &amp; b&gt;</title>');
  expect(svg.match(/<path /g)).toHaveLength(2);
  expect(svg).toContain('>one</text>');
  expect(svg).toContain('>two</text>');
  // The y axis reaches the largest rate (250 → a nice maximum of 500).
  expect(svg).toContain('>500</text>');
});

test('latency chart: a p50 bar and a p99 mark per system and shape; missing shapes are skipped', () => {
  const svg = latencyChart('Latency', ['a', 'b'], {
    x: { a: { p50: 2, p99: 20 }, b: { p50: 100, p99: 400 } },
    y: { a: { p50: 1, p99: 3 } },
  });
  expect(svg.match(/<rect [^>]*><title>/g)).toHaveLength(3);
  expect(svg.match(/<line [^>]*><title>/g)).toHaveLength(3);
  expect(svg).toContain('<title>x b p99 400 ms</title>');
});
