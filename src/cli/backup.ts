/**
 * `tidemark backup --to DIR` and `tidemark restore --from DIR [start flags]` (docs/backup.md).
 */
import { hostname } from 'node:os';
import { takeBackup } from '../backup/backup.js';
import { restoreNode } from '../backup/restore.js';
import { loadConfig } from '../cluster/config.js';
import { isTidemarkError } from '../errors/index.js';
import {
  COMMON_OPTIONS,
  COMMON_USAGE,
  clientSecurity,
  endpoints,
  parse,
  positiveInt,
  runCommand,
  table,
  UsageError,
} from './client-args.js';

const BACKUP_USAGE = `Usage: tidemark backup --to DIR [--parallel N] [--json] [options]

Takes a consistent backup of the whole cluster without stopping writes: for each shard, after a read
barrier, a copy of its store at one Raft index (with its Kafka offset) is streamed into DIR/shard-<n>.img;
DIR/manifest.json is written last. DIR must be new or empty. Needs the admin role when auth is on.

  --to DIR          the backup directory
  --parallel N      shards fetched at once (default 2)
  --json            print the manifest as JSON
  --timeout MS      deadline for each shard's barrier and image copy to start streaming (default 300000)

${COMMON_USAGE}`;

const RESTORE_USAGE = `Usage: tidemark restore --from DIR [--json] <the node's start flags>

Seeds an empty data directory for one node of a NEW cluster from a backup: the shards placed on this node get
their store image and a Raft snapshot point at the backup's index. Run it for every node of the new cluster
with the flags you will start it with (--node-id, --peers, --shards, --replication, --data-dir, or --config),
then start the nodes. The shard count must equal the backup's.

  --from DIR        the backup directory (with manifest.json)
  --if-empty        do nothing (exit 0) when the data directory already has data: for an init container
                    that runs at every pod start
  --json            print the result as JSON`;

export async function backup(argv: string[]): Promise<number> {
  return runCommand('backup', BACKUP_USAGE, async () => {
    const { values, positionals } = parse(argv, {
      ...COMMON_OPTIONS,
      timeout: { type: 'string', default: '300000' },
      to: { type: 'string' },
      parallel: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (values.help) {
      console.log(BACKUP_USAGE);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    if (values.to === undefined || values.to === '') throw new UsageError('--to DIR is required');
    const security = clientSecurity(values as Record<string, unknown>);
    const manifest = await takeBackup({
      dir: values.to,
      endpoints: endpoints(values.endpoint),
      timeoutMs: positiveInt(values.timeout, 'timeout', 300_000),
      parallel: positiveInt(values.parallel, 'parallel', 2),
      ...security,
      onShard: (s) => {
        if (!values.json)
          console.error(`shard ${s.shard}: index ${s.index}, ${s.bytes} bytes from ${s.sourceNode}`);
      },
    });
    if (values.json) console.log(JSON.stringify(manifest, null, 2));
    else {
      console.log(
        table(
          ['shard', 'index', 'term', 'kafka offset', 'bytes', 'from'],
          manifest.shards.map((s) => [
            String(s.shard),
            String(s.index),
            String(s.term),
            String(s.kafkaNextOffset),
            String(s.bytes),
            s.sourceNode,
          ]),
        ),
      );
      console.log(`backup of ${manifest.shardCount} shards written to ${values.to}`);
    }
    return 0;
  });
}

/** Takes `--from DIR` / `--from=DIR` and `--json` out of argv; the rest are the node's start flags. */
function splitRestoreArgs(argv: readonly string[]): {
  from?: string;
  json: boolean;
  ifEmpty: boolean;
  help: boolean;
  rest: string[];
} {
  const rest: string[] = [];
  let from: string | undefined;
  let json = false;
  let ifEmpty = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--from') {
      if (i + 1 >= argv.length) throw new UsageError('--from needs a directory');
      from = argv[++i]!;
    } else if (a.startsWith('--from=')) from = a.slice('--from='.length);
    else if (a === '--json') json = true;
    else if (a === '--if-empty') ifEmpty = true;
    else if (a === '--help' || a === '-h') help = true;
    else rest.push(a);
  }
  return { ...(from === undefined ? {} : { from }), json, ifEmpty, help, rest };
}

export async function restore(argv: string[]): Promise<number> {
  return runCommand('restore', RESTORE_USAGE, async () => {
    const args = splitRestoreArgs(argv);
    if (args.help) {
      console.log(RESTORE_USAGE);
      return 0;
    }
    if (args.from === undefined || args.from === '') throw new UsageError('--from DIR is required');
    const config = loadConfig({ argv: args.rest, env: process.env, hostname: hostname() });
    let r: Awaited<ReturnType<typeof restoreNode>>;
    try {
      r = await restoreNode({ from: args.from, config });
    } catch (err) {
      if (args.ifEmpty && isTidemarkError(err) && err.reason === 'data_dir_not_empty') {
        console.log(
          `node ${config.nodeId}: ${config.dataDir} already has data; nothing restored (--if-empty)`,
        );
        return 0;
      }
      throw err;
    }
    if (args.json) {
      console.log(JSON.stringify({ nodeId: r.nodeId, dataDir: r.dataDir, shards: r.shards }, null, 2));
    } else {
      console.log(
        table(
          ['shard', 'index', 'term', 'kafka offset', 'bytes', 'replicas'],
          r.shards.map((s) => [
            String(s.shard),
            String(s.index),
            String(s.term),
            String(s.kafkaNextOffset),
            String(s.bytes),
            s.voters.join(','),
          ]),
        ),
      );
      console.log(
        `node ${r.nodeId}: ${r.shards.length} of ${r.manifest.shardCount} shards restored into ${r.dataDir}; ` +
          'restore the other nodes, then start them',
      );
    }
    return 0;
  });
}
