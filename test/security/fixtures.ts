/** Shared test material: certificates made once per file with `tidemark certs` (openssl), a stub service. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { makeCerts } from '../../src/cli/certs.js';
import { TidemarkService } from '../../src/gen/tidemark/v1/client_pb.js';
import { type AddServiceOptions, addService } from '../../src/transport/grpc-adapter.js';

/** Two CAs in `root`/main and `root`/other; main has nodes a, b, c, other has nodes a and c. */
export function makeTestCerts(): { root: string; main: string; other: string } {
  const root = mkdtempSync(join(tmpdir(), 'tidemark-certs-test-'));
  const main = join(root, 'main');
  const other = join(root, 'other');
  makeCerts({ out: main, nodes: ['a', 'b', 'c'], days: 2 });
  makeCerts({ out: other, nodes: ['a', 'c'], days: 2 });
  return { root, main, other };
}

export function filesOf(dir: string, node: string): { ca: string; cert: string; key: string } {
  return { ca: join(dir, 'ca.crt'), cert: join(dir, `${node}.crt`), key: join(dir, `${node}.key`) };
}

/** TidemarkService with stub handlers; `calls` counts handler runs per method. */
export function addStubService(server: grpc.Server, options: AddServiceOptions = {}): Map<string, number> {
  const calls = new Map<string, number>();
  const hit = (m: string) => calls.set(m, (calls.get(m) ?? 0) + 1);
  addService(
    server,
    TidemarkService,
    {
      write: () => {
        hit('write');
        return { accepted: 1n };
      },
      query: async function* () {
        hit('query');
        yield* [];
      },
      shardMap: () => {
        hit('shardMap');
        return { shardCount: 7 };
      },
      status: () => {
        hit('status');
        return {};
      },
      transferLeader: () => {
        hit('transferLeader');
        return {};
      },
      setRetention: () => {
        hit('setRetention');
        return {};
      },
    },
    options,
  );
  return calls;
}
