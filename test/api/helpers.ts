/** Shared fixtures of the HTTP API tests: a real server on 127.0.0.1, port 0, over a MemoryCluster. */
import { createHttpApi, type HttpApi, type HttpApiOptions } from '../../src/api/http.js';
import { MemoryCluster, type MemoryClusterOptions } from '../../src/api/memory-cluster.js';

/** Base seed for the fuzz tests; TIDEMARK_SEED=<n> reproduces or explores. */
export const SEED = Number(process.env.TIDEMARK_SEED ?? 20261121);

export interface TestServer {
  api: HttpApi;
  cluster: MemoryCluster;
  url: string;
  close(): Promise<void>;
}

export async function startServer(
  options: Partial<Omit<HttpApiOptions, 'cluster'>> & { clusterOptions?: MemoryClusterOptions } = {},
): Promise<TestServer> {
  const { clusterOptions, ...rest } = options;
  const cluster = new MemoryCluster(clusterOptions);
  const api = createHttpApi({ cluster, now: () => 1_700_000_000_000, ...rest });
  const { port } = await api.listen('127.0.0.1', 0);
  return {
    api,
    cluster,
    url: `http://127.0.0.1:${port}`,
    async close() {
      await api.close(1000);
      await cluster.close();
    },
  };
}

/** Every stored sample of `metric`, as [timestamp, value] pairs per series key. */
export async function stored(
  cluster: MemoryCluster,
  metric: string,
): Promise<Record<string, [number, number][]>> {
  const out: Record<string, [number, number][]> = {};
  for (const s of await cluster.select({ metric })) {
    const key = Object.entries(s.tags)
      .sort()
      .map(([k, v]) => `${k}=${v}`)
      .join(',');
    out[key] = Array.from(s.timestamps, (t, i) => [t, s.values[i]]);
  }
  return out;
}

/** Parses the Prometheus text format into `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$/.exec(line);
    if (m === null) throw new Error(`bad metrics line: ${line}`);
    const labels =
      m[2] === undefined
        ? ''
        : [...m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
            .map((x) => `${x[1]}=${x[2]}`)
            .sort()
            .join(',');
    out.set(labels === '' ? m[1] : `${m[1]}{${labels}}`, Number(m[3]));
  }
  return out;
}

/** A response's JSON body, loosely typed for assertions. */
// biome-ignore lint/suspicious/noExplicitAny: assertions walk arbitrary JSON
export async function json(res: Response): Promise<any> {
  return res.json();
}
