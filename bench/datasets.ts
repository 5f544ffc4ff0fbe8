/**
 * Benchmark datasets, generated in code from a fixed seed. Each series' samples are columnar typed arrays.
 *
 * - tsbs: TSBS cpu-only. Per host 10 `cpu_usage_*` metrics and 10 host tags (hostname, region, datacenter,
 *   rack, os, arch, team, service, service_version, service_environment); 10 s interval. Each value is a
 *   random walk clamped to [0, 100] with N(0, 1) steps, written as an integer (TSBS's serializer truncates the
 *   walk to int64 for cpu-only), so values are small-step integer walks.
 * - node: node_exporter-like host metrics at 15 s: per host 32 `node_cpu_seconds_total` counters (4 cpus ×
 *   8 modes, 2 decimals), memory gauges in 4 KiB pages, filesystem gauges, network byte counters with varying
 *   integer increments, error/drop counters that rarely move, disk counters, and 2-decimal load gauges — the
 *   mix of a real node_exporter scrape, where many series barely change.
 * - random: uniformly random float64 values (full 53-bit mantissas), 10 s interval: the incompressible case.
 */
import type { Series } from '../src/model/index.js';
import { Rng } from '../src/util/random.js';

export interface SeriesData {
  series: Series;
  ts: Float64Array;
  vals: Float64Array;
}

export interface Dataset {
  name: string;
  intervalMs: number;
  series: SeriesData[];
  samples: number;
}

export const START_MS = Date.UTC(2026, 0, 1);

function normal(rng: Rng): number {
  // Box–Muller; one draw per call keeps the stream simple and reproducible.
  const u = 1 - rng.next();
  const v = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

function timestamps(n: number, intervalMs: number, start = START_MS): Float64Array {
  const ts = new Float64Array(n);
  for (let i = 0; i < n; i++) ts[i] = start + i * intervalMs;
  return ts;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

export const TSBS_FIELDS = [
  'usage_user',
  'usage_system',
  'usage_idle',
  'usage_nice',
  'usage_iowait',
  'usage_irq',
  'usage_softirq',
  'usage_steal',
  'usage_guest',
  'usage_guest_nice',
] as const;

export function tsbsHostTags(rng: Rng, host: number): Record<string, string> {
  const regions = ['us-east-1', 'us-west-1', 'us-west-2', 'eu-west-1', 'eu-central-1', 'ap-southeast-1'];
  const region = rng.pick(regions);
  return {
    hostname: `host_${host}`,
    region,
    datacenter: `${region}${rng.pick(['a', 'b', 'c'])}`,
    rack: String(rng.int(0, 100)),
    os: rng.pick(['Ubuntu16.10', 'Ubuntu16.04LTS', 'Ubuntu15.10']),
    arch: rng.pick(['x64', 'x86']),
    team: rng.pick(['SF', 'NYC', 'LON', 'CHI']),
    service: String(rng.int(0, 20)),
    service_version: String(rng.int(0, 2)),
    service_environment: rng.pick(['production', 'staging', 'test']),
  };
}

export function tsbs(hosts: number, samplesPerSeries: number, seed = 1): Dataset {
  const rng = new Rng(seed);
  const intervalMs = 10_000;
  const series: SeriesData[] = [];
  for (let h = 0; h < hosts; h++) {
    const tags = tsbsHostTags(rng, h);
    for (const field of TSBS_FIELDS) {
      const ts = timestamps(samplesPerSeries, intervalMs);
      const vals = new Float64Array(samplesPerSeries);
      let walk = rng.next() * 100;
      for (let i = 0; i < samplesPerSeries; i++) {
        walk = Math.min(100, Math.max(0, walk + normal(rng)));
        vals[i] = Math.trunc(walk);
      }
      series.push({ series: { metric: `cpu_${field}`, tags }, ts, vals });
    }
  }
  return { name: 'tsbs', intervalMs, series, samples: hosts * TSBS_FIELDS.length * samplesPerSeries };
}

type Gen = (rng: Rng, n: number) => Float64Array;

function counter(step: (rng: Rng) => number, decimals: number): Gen {
  const scale = 10 ** decimals;
  return (rng, n) => {
    const out = new Float64Array(n);
    let acc = Math.round(rng.next() * 1e6 * scale) / scale;
    for (let i = 0; i < n; i++) {
      acc = Math.round((acc + Math.max(0, step(rng))) * scale) / scale;
      out[i] = acc;
    }
    return out;
  };
}

function gauge(next: (rng: Rng, prev: number) => number, init: (rng: Rng) => number): Gen {
  return (rng, n) => {
    const out = new Float64Array(n);
    let v = init(rng);
    for (let i = 0; i < n; i++) {
      v = next(rng, v);
      out[i] = v;
    }
    return out;
  };
}

function nodeMetrics(): { metric: string; tags: Record<string, string>; gen: Gen }[] {
  const m: { metric: string; tags: Record<string, string>; gen: Gen }[] = [];
  const modeShare: Record<string, number> = {
    idle: 0.85,
    user: 0.08,
    system: 0.04,
    iowait: 0.01,
    irq: 0.001,
    softirq: 0.004,
    steal: 0.0,
    nice: 0.0,
  };
  for (let cpu = 0; cpu < 4; cpu++) {
    for (const [mode, share] of Object.entries(modeShare)) {
      m.push({
        metric: 'node_cpu_seconds_total',
        tags: { cpu: String(cpu), mode },
        gen: counter((rng) => 15 * share * (1 + 0.2 * normal(rng)), 2),
      });
    }
  }
  const PAGE = 4096;
  const mem = (name: string, base: number, churnPages: number) =>
    m.push({
      metric: `node_memory_${name}_bytes`,
      tags: {},
      gen: gauge(
        (rng, prev) =>
          churnPages === 0 ? prev : Math.max(0, prev + PAGE * Math.round(normal(rng) * churnPages)),
        () => base,
      ),
    });
  mem('MemTotal', 16_777_216 * 1024, 0);
  mem('MemAvailable', 9_000_000 * 1024, 300);
  mem('MemFree', 2_000_000 * 1024, 300);
  mem('Cached', 5_000_000 * 1024, 50);
  mem('Buffers', 300_000 * 1024, 5);
  for (const mp of ['/', '/boot', '/data']) {
    m.push({
      metric: 'node_filesystem_size_bytes',
      tags: { mountpoint: mp },
      gen: gauge(
        (_, p) => p,
        () => 500e9,
      ),
    });
    m.push({
      metric: 'node_filesystem_avail_bytes',
      tags: { mountpoint: mp },
      gen: gauge(
        (rng, p) => (rng.chance(0.1) ? p - PAGE * rng.int(1, 64) : p),
        () => 200e9,
      ),
    });
  }
  for (const dev of ['eth0', 'lo']) {
    m.push({
      metric: 'node_network_receive_bytes_total',
      tags: { device: dev },
      gen: counter((rng) => Math.round(15 * 20_000 * (1 + 0.5 * normal(rng))), 0),
    });
    m.push({
      metric: 'node_network_transmit_bytes_total',
      tags: { device: dev },
      gen: counter((rng) => Math.round(15 * 8_000 * (1 + 0.5 * normal(rng))), 0),
    });
    for (const kind of ['errs', 'drop']) {
      for (const dir of ['receive', 'transmit']) {
        m.push({
          metric: `node_network_${dir}_${kind}_total`,
          tags: { device: dev },
          gen: counter((rng) => (rng.chance(0.002) ? 1 : 0), 0),
        });
      }
    }
  }
  for (const dev of ['sda', 'sdb']) {
    m.push({
      metric: 'node_disk_reads_completed_total',
      tags: { device: dev },
      gen: counter((rng) => (rng.chance(0.3) ? rng.int(1, 40) : 0), 0),
    });
    m.push({
      metric: 'node_disk_io_time_seconds_total',
      tags: { device: dev },
      gen: counter((rng) => (rng.chance(0.3) ? rng.next() * 0.2 : 0), 2),
    });
  }
  for (const w of ['1', '5', '15']) {
    const k = 1 / Number(w);
    m.push({
      metric: `node_load${w}`,
      tags: {},
      gen: gauge(
        (rng, p) => round2(Math.max(0, p + k * (0.6 - p) * 0.1 + 0.05 * k * normal(rng))),
        () => 0.6,
      ),
    });
  }
  m.push({
    metric: 'node_boot_time_seconds',
    tags: {},
    gen: gauge(
      (_, p) => p,
      () => 1_767_000_000,
    ),
  });
  return m;
}

export function node(hosts: number, samplesPerSeries: number, seed = 2): Dataset {
  const rng = new Rng(seed);
  const intervalMs = 15_000;
  const metrics = nodeMetrics();
  const series: SeriesData[] = [];
  for (let h = 0; h < hosts; h++) {
    for (const { metric, tags, gen } of metrics) {
      series.push({
        series: { metric, tags: { ...tags, instance: `node-${h}:9100`, job: 'node' } },
        ts: timestamps(samplesPerSeries, intervalMs),
        vals: gen(rng, samplesPerSeries),
      });
    }
  }
  return { name: 'node', intervalMs, series, samples: series.length * samplesPerSeries };
}

export function random(seriesCount: number, samplesPerSeries: number, seed = 3): Dataset {
  const rng = new Rng(seed);
  const intervalMs = 10_000;
  const series: SeriesData[] = [];
  for (let s = 0; s < seriesCount; s++) {
    const vals = new Float64Array(samplesPerSeries);
    for (let i = 0; i < samplesPerSeries; i++) {
      // 53 random bits, scaled: every mantissa bit is noise.
      const hi = rng.nextU32() >>> 5;
      const lo = rng.nextU32() >>> 6;
      vals[i] = ((hi * 67108864 + lo) / 9007199254740992) * 1000 - 500;
    }
    series.push({
      series: { metric: 'random_value', tags: { id: String(s) } },
      ts: timestamps(samplesPerSeries, intervalMs),
      vals,
    });
  }
  return { name: 'random', intervalMs, series, samples: seriesCount * samplesPerSeries };
}
