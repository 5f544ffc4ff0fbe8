import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root, found by walking up (the CLI runs from src/ under tsx and from dist/src/ when built). */
function packageJson(): { version: string } {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found');
    dir = up;
  }
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
}

const HELP = `tidemark — a clustered time-series database

Usage: tidemark <command> [options]

Commands:
  start [flags]     run one cluster node (flags, TIDEMARK_* variables and --config: docs/configuration.md)
  dev [--dir DIR] [--nodes N] [--base-port P] [--shards S] [--kafka] [--kafka-port K]
                    a local cluster of N node processes (node i at ports P, P+1, P+2 + 10·i), with demo data
  demo [--dir DIR] [--series N] [--hours H]
                    open a single-node shard store, write demo data, query it and print the result
  write <metric> <value> [tag=value ...] [--timestamp T] | --file PATH|-
                    write a sample, or line protocol from a file or stdin, to a cluster
  query <metric> [tag=value|tag!=value|tag=~re|tag!~re ...] [--start T] [--end T] [--chart|--json]
                    print the matching series' samples as a table (or a chart, or JSON)
  status [--json]   nodes and shards of a cluster: leaders, terms, applied index, health
  retention [--set DURATION]
                    show, or set (admin), every shard's retention (docs/cluster.md)
  backup --to DIR   a consistent backup of the whole cluster, taken while it runs (docs/backup.md)
  restore --from DIR [start flags]
                    seed an empty data directory of a new cluster's node from a backup
  certs --out DIR --nodes ID[,ID...] [--hosts ...] [--domain ...]
                    a development CA and node/client certificates for mutual TLS (needs openssl; docs/security.md)
  version           print the version
  help              this text

write, query and status talk to a cluster's gRPC client API: --endpoint HOST:PORT (default 127.0.0.1:4243,
node-0 of \`tidemark dev\`); \`tidemark <command> --help\` for their options. See docs/cluster.md.`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return 0;
    case 'version':
    case '--version': {
      console.log(packageJson().version);
      return 0;
    }
    case 'start': {
      const { start } = await import('./start.js');
      return start(rest);
    }
    case 'dev': {
      const { dev } = await import('./dev.js');
      return dev(rest);
    }
    case 'demo': {
      const { demo } = await import('./demo.js');
      return demo(rest);
    }
    case 'write': {
      const { write } = await import('./write.js');
      return write(rest);
    }
    case 'query': {
      const { query } = await import('./query.js');
      return query(rest);
    }
    case 'status': {
      const { status } = await import('./status.js');
      return status(rest);
    }
    case 'retention': {
      const { retention } = await import('./retention.js');
      return retention(rest);
    }
    case 'backup': {
      const { backup } = await import('./backup.js');
      return backup(rest);
    }
    case 'restore': {
      const { restore } = await import('./backup.js');
      return restore(rest);
    }
    case 'certs': {
      const { certs } = await import('./certs.js');
      return certs(rest);
    }
    default:
      console.error(`tidemark: unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}
