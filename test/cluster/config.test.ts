import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CONFIG,
  type LoadConfigInput,
  loadConfig,
  type NodeConfig,
  resolveNodeConfig,
  SETTINGS,
  splitHostPort,
} from '../../src/cluster/config.js';
import { TidemarkError } from '../../src/errors/index.js';
import { DEFAULT_STORE_OPTIONS } from '../../src/storage/options.js';

const files = (contents: Record<string, unknown>): ((path: string) => string) => {
  return (path) => {
    if (!Object.hasOwn(contents, path)) throw new Error(`ENOENT: no such file, open '${path}'`);
    const c = contents[path];
    return typeof c === 'string' ? c : JSON.stringify(c);
  };
};

function fails(input: LoadConfigInput): TidemarkError {
  try {
    loadConfig(input);
  } catch (err) {
    expect(err).toBeInstanceOf(TidemarkError);
    expect((err as TidemarkError).code).toBe('INVALID_ARGUMENT');
    return err as TidemarkError;
  }
  throw new Error(`expected loadConfig to fail for ${JSON.stringify(input)}`);
}

/** The error names the source (flag / variable / file key) and the setting (details.field). */
function expectBad(input: LoadConfigInput, source: string, field: string, message?: RegExp): TidemarkError {
  const err = fails(input);
  expect(err.message.startsWith(source), `"${err.message}" should start with "${source}"`).toBe(true);
  expect(err.details.source).toBe(source);
  expect(err.field).toBe(field);
  if (message) expect(err.message).toMatch(message);
  return err;
}

const THREE = 'a=10.0.0.1:4244,b=10.0.0.2:4244,c=10.0.0.3:4244';

describe('defaults', () => {
  it('DEFAULT_CONFIG is frozen and carries the documented defaults', () => {
    expect(Object.isFrozen(DEFAULT_CONFIG)).toBe(true);
    expect(Object.isFrozen(DEFAULT_CONFIG.listen)).toBe(true);
    expect(Object.isFrozen(DEFAULT_CONFIG.store)).toBe(true);
    expect(DEFAULT_CONFIG.listen).toEqual({
      http: '0.0.0.0:4242',
      grpc: '0.0.0.0:4243',
      peer: '0.0.0.0:4244',
    });
    expect(DEFAULT_CONFIG.shards).toBe(16);
    expect(DEFAULT_CONFIG.replication).toBe(3);
    expect(DEFAULT_CONFIG.raft).toEqual({
      tickMs: 100,
      electionTicks: 10,
      heartbeatTicks: 1,
      compactEntries: 10_000,
    });
    expect(DEFAULT_CONFIG.store).toEqual(DEFAULT_STORE_OPTIONS);
  });

  it('loadConfig() with no input is a valid single node (R = min(3, nodes) = 1)', () => {
    const c = loadConfig();
    expect(c.nodeId).toBe('tidemark-0');
    expect(c.peers).toEqual([{ id: 'tidemark-0', address: '127.0.0.1:4244' }]);
    expect(c.advertisePeer).toBe('127.0.0.1:4244');
    expect(c.replication).toBe(1);
    expect(c.shards).toBe(16);
    expect(c.dataDir).toBe('data');
    expect(c.limits).toEqual(DEFAULT_CONFIG.limits);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.peers[0])).toBe(true);
  });

  it('default replication is 3 once there are 3+ nodes', () => {
    expect(loadConfig({ argv: ['--node-id', 'a', '--peers', THREE] }).replication).toBe(3);
    expect(loadConfig({ argv: ['--node-id', 'a', '--peers', 'a=h:1,b=h:2'] }).replication).toBe(2);
  });

  it('every setting has a flag, a variable and a key, all distinct', () => {
    const flags = new Set(SETTINGS.map((s) => s.flag));
    const envs = new Set(SETTINGS.map((s) => s.env));
    const keys = new Set(SETTINGS.map((s) => s.key));
    expect(flags.size).toBe(SETTINGS.length);
    expect(envs.size).toBe(SETTINGS.length);
    expect(keys.size).toBe(SETTINGS.length);
    for (const s of SETTINGS) expect(s.env).toMatch(/^TIDEMARK_[A-Z0-9_]+$/);
    expect(SETTINGS.find((s) => s.key === 'store.oooWindowMs')).toMatchObject({
      flag: 'store-ooo-window-ms',
      env: 'TIDEMARK_STORE_OOO_WINDOW_MS',
    });
  });
});

describe('sources and precedence', () => {
  it('reads every flag', () => {
    const c = loadConfig({
      argv: [
        '--node-id=b',
        '--http',
        '127.0.0.1:5000',
        '--grpc',
        '127.0.0.1:5001',
        '--peer-listen',
        '0.0.0.0:5002',
        '--advertise-peer',
        '10.0.0.2:4244',
        '--peers',
        ` ${THREE} `,
        '--shards',
        '64',
        '--replication',
        '2',
        '--data-dir',
        '/var/lib/tidemark',
        '--raft-tick-ms',
        '50',
        '--election-ticks',
        '20',
        '--heartbeat-ticks',
        '2',
        '--max-proposal-queue',
        '10',
        '--max-request-bytes',
        '2048',
        '--store-seal-samples',
        '512',
        '--store-retention-ms',
        '86400000',
      ],
    });
    expect(c).toEqual({
      nodeId: 'b',
      listen: { http: '127.0.0.1:5000', grpc: '127.0.0.1:5001', peer: '0.0.0.0:5002' },
      advertisePeer: '10.0.0.2:4244',
      peers: [
        { id: 'a', address: '10.0.0.1:4244' },
        { id: 'b', address: '10.0.0.2:4244' },
        { id: 'c', address: '10.0.0.3:4244' },
      ],
      peerClients: {},
      shards: 64,
      replication: 2,
      dataDir: '/var/lib/tidemark',
      raft: { tickMs: 50, electionTicks: 20, heartbeatTicks: 2, compactEntries: 10_000 },
      checkpointIntervalMs: 30_000,
      limits: { ...DEFAULT_CONFIG.limits, maxProposalQueue: 10, maxRequestBytes: 2048 },
      store: { ...DEFAULT_STORE_OPTIONS, sealSamples: 512, retentionMs: 86400000 },
      storeSyncIntervalMs: 1000,
    } satisfies NodeConfig);
  });

  it('reads every variable', () => {
    const c = loadConfig({
      env: {
        TIDEMARK_NODE_ID: 'c',
        TIDEMARK_HTTP: '[::1]:5000',
        TIDEMARK_GRPC: 'localhost:5001',
        TIDEMARK_PEER_LISTEN: '0.0.0.0:5002',
        TIDEMARK_PEERS: THREE,
        TIDEMARK_SHARDS: '8',
        TIDEMARK_REPLICATION: '3',
        TIDEMARK_DATA_DIR: '/d',
        TIDEMARK_RAFT_TICK_MS: '10',
        TIDEMARK_ELECTION_TICKS: '5',
        TIDEMARK_HEARTBEAT_TICKS: '1',
        TIDEMARK_MAX_PROPOSAL_QUEUE: '7',
        TIDEMARK_MAX_REQUEST_BYTES: '4096',
        TIDEMARK_STORE_CHECKPOINT_RECORDS: '9',
        // Unrelated variables are ignored; non-config TIDEMARK_* too.
        PATH: '/bin',
        TIDEMARK_SEED: '42',
        TIDEMARK_DEBUG: '1',
        TIDEMARK_ADVERTISE_PEER: undefined,
      },
    });
    expect(c.nodeId).toBe('c');
    expect(c.listen).toEqual({ http: '[::1]:5000', grpc: 'localhost:5001', peer: '0.0.0.0:5002' });
    expect(c.advertisePeer).toBe('10.0.0.3:4244');
    expect(c.shards).toBe(8);
    expect(c.replication).toBe(3);
    expect(c.dataDir).toBe('/d');
    expect(c.raft).toEqual({ tickMs: 10, electionTicks: 5, heartbeatTicks: 1, compactEntries: 10_000 });
    expect(c.limits).toEqual({ ...DEFAULT_CONFIG.limits, maxProposalQueue: 7, maxRequestBytes: 4096 });
    expect(c.store.checkpointRecords).toBe(9);
  });

  it('reads a nested JSON config file (peers as an object, a list or a string)', () => {
    const file = {
      nodeId: 'a',
      listen: { http: '0.0.0.0:8080' },
      peers: { a: 'a.svc:4244', b: 'b.svc:4244', c: 'c.svc:4244' },
      shards: 32,
      raft: { tickMs: 20 },
      limits: { maxRequestBytes: 1 << 20 },
      store: { sealSamples: 256 },
    };
    const c = loadConfig({
      argv: ['--config', '/etc/tidemark.json'],
      readFile: files({ '/etc/tidemark.json': file }),
    });
    expect(c.listen.http).toBe('0.0.0.0:8080');
    expect(c.listen.grpc).toBe('0.0.0.0:4243');
    expect(c.peers.map((p) => p.id)).toEqual(['a', 'b', 'c']);
    expect(c.shards).toBe(32);
    expect(c.raft).toEqual({ tickMs: 20, electionTicks: 10, heartbeatTicks: 1, compactEntries: 10_000 });
    expect(c.limits.maxRequestBytes).toBe(1 << 20);
    expect(c.store.sealSamples).toBe(256);
    const asList = loadConfig({
      file: 'f.json',
      readFile: files({ 'f.json': { ...file, peers: c.peers } }),
    });
    const asString = loadConfig({
      file: 'f.json',
      readFile: files({ 'f.json': { ...file, peers: 'a=a.svc:4244,b=b.svc:4244,c=c.svc:4244' } }),
    });
    expect(asList).toEqual(c);
    expect(asString).toEqual(c);
  });

  it('precedence: defaults < file < env < flags, per setting', () => {
    const readFile = files({
      'cfg.json': { shards: 32, replication: 1, dataDir: '/from-file', raft: { tickMs: 30 } },
    });
    const env = { TIDEMARK_CONFIG: 'cfg.json', TIDEMARK_SHARDS: '64', TIDEMARK_DATA_DIR: '/from-env' };
    const c = loadConfig({ env, readFile, argv: ['--shards', '128'] });
    expect(c.shards).toBe(128); // flag beats env beats file
    expect(c.dataDir).toBe('/from-env'); // env beats file
    expect(c.raft.tickMs).toBe(30); // file beats default
    expect(c.replication).toBe(1);
    expect(c.raft.electionTicks).toBe(10); // default
    expect(loadConfig({ env, readFile }).shards).toBe(64);
    expect(loadConfig({ readFile, file: 'cfg.json' }).shards).toBe(32);
  });

  it('config path: --config beats TIDEMARK_CONFIG beats the caller default', () => {
    const readFile = files({ 'x.json': { shards: 1 }, 'y.json': { shards: 2 }, 'z.json': { shards: 3 } });
    expect(loadConfig({ readFile, file: 'z.json' }).shards).toBe(3);
    expect(loadConfig({ readFile, file: 'z.json', env: { TIDEMARK_CONFIG: 'y.json' } }).shards).toBe(2);
    expect(
      loadConfig({ readFile, file: 'z.json', env: { TIDEMARK_CONFIG: 'y.json' }, argv: ['--config=x.json'] })
        .shards,
    ).toBe(1);
  });

  it('a NodeConfig fed back through resolveNodeConfig is unchanged', () => {
    const c = loadConfig({
      argv: ['--node-id', 'b', '--peers', THREE, '--shards', '9', '--store-seal-samples', '77'],
    });
    expect(resolveNodeConfig(JSON.parse(JSON.stringify(c)))).toEqual(c);
    expect(resolveNodeConfig({ nodeId: 'x' }).nodeId).toBe('x');
  });
});

describe('validation names the setting and its source', () => {
  it('integers: not a number, not an integer, out of range — flag, env, file', () => {
    expect(expectBad({ argv: ['--shards', 'x'] }, '--shards', 'shards').message).toBe(
      '--shards must be an integer in [1, 4096], got "x"',
    );
    expectBad({ argv: ['--shards', '0'] }, '--shards', 'shards', /\[1, 4096\], got "0"/);
    expectBad({ argv: ['--shards', '4097'] }, '--shards', 'shards');
    expectBad({ argv: ['--shards', '1.5'] }, '--shards', 'shards');
    expectBad({ argv: ['--shards', ''] }, '--shards', 'shards');
    expectBad({ env: { TIDEMARK_SHARDS: 'many' } }, 'TIDEMARK_SHARDS', 'shards', /got "many"/);
    expect(
      expectBad(
        { file: 'config.json', readFile: files({ 'config.json': { shards: '16' } }) },
        'config.json: shards',
        'shards',
      ).message,
    ).toBe('config.json: shards must be an integer in [1, 4096], got "16"');
    expectBad({ file: 'c.json', readFile: files({ 'c.json': { shards: 2.5 } }) }, 'c.json: shards', 'shards');
    expectBad(
      { file: 'c.json', readFile: files({ 'c.json': { raft: { tickMs: 0 } } }) },
      'c.json: raft.tickMs',
      'raft.tickMs',
    );
    expectBad({ argv: ['--replication', '10'] }, '--replication', 'replication', /\[1, 9\]/);
    expectBad({ argv: ['--raft-tick-ms=-1'] }, '--raft-tick-ms', 'raft.tickMs', /got "-1"/);
    expectBad({ argv: ['--raft-tick-ms', '-1'] }, '--raft-tick-ms', 'raft.tickMs', /needs a value/);
    expectBad({ env: { TIDEMARK_ELECTION_TICKS: '1' } }, 'TIDEMARK_ELECTION_TICKS', 'raft.electionTicks');
    expectBad({ argv: ['--max-request-bytes', '10'] }, '--max-request-bytes', 'limits.maxRequestBytes');
    expectBad({ argv: ['--max-proposal-queue', '0'] }, '--max-proposal-queue', 'limits.maxProposalQueue');
  });

  it('store options reuse the store’s own ranges', () => {
    expectBad(
      { argv: ['--store-seal-samples', '0'] },
      '--store-seal-samples',
      'store.sealSamples',
      /must be an integer in \[1, \d+\], got "0"/,
    );
    expectBad(
      { env: { TIDEMARK_STORE_SEAL_SAMPLES: 'big' } },
      'TIDEMARK_STORE_SEAL_SAMPLES',
      'store.sealSamples',
      /in \[1, \d+\], got "big"/,
    );
    expectBad(
      { file: 'c.json', readFile: files({ 'c.json': { store: { oooWindowMs: -1 } } }) },
      'c.json: store.oooWindowMs',
      'store.oooWindowMs',
    );
    expectBad(
      { file: 'c.json', readFile: files({ 'c.json': { store: { bogus: 1 } } }) },
      'c.json: store.bogus',
      'store.bogus',
    );
  });

  it('unknown flags, positionals, unknown variables and unknown keys are rejected', () => {
    const flag = expectBad({ argv: ['--shard', '3'] }, '--shard', '--shard', /is not a known flag/);
    expect(flag.reason).toBe('flag_unknown');
    expect(fails({ argv: ['start'] }).reason).toBe('argument_unexpected');
    expect(fails({ argv: ['start'] }).message).toBe('arguments: unexpected argument "start"');
    const missing = expectBad({ argv: ['--shards'] }, '--shards', 'shards', /needs a value/);
    expect(missing.reason).toBe('flag_invalid');
    expectBad({ env: { TIDEMARK_SHARD: '3' } }, 'TIDEMARK_SHARD', 'TIDEMARK_SHARD', /not a known setting/);
    expectBad(
      { file: 'c.json', readFile: files({ 'c.json': { shard: 3 } }) },
      'c.json: shard',
      'shard',
      /not a known setting/,
    );
    expectBad(
      { file: 'c.json', readFile: files({ 'c.json': { raft: { tick: 3 } } }) },
      'c.json: raft.tick',
      'raft.tick',
    );
    expectBad(
      { file: 'c.json', readFile: files({ 'c.json': { raft: 3 } }) },
      'c.json: raft',
      'raft',
      /must be an object/,
    );
  });

  it('config file problems: unreadable, not JSON, not an object', () => {
    const missing = expectBad(
      { argv: ['--config', 'nope.json'], readFile: files({}) },
      '--config',
      'config',
      /cannot read/,
    );
    expect(missing.reason).toBe('config_file_unreadable');
    expectBad({ env: { TIDEMARK_CONFIG: 'nope.json' }, readFile: files({}) }, 'TIDEMARK_CONFIG', 'config');
    const notJson = expectBad(
      { file: 'c.json', readFile: files({ 'c.json': '{ shards: 3' }) },
      'c.json',
      'config',
      /not valid JSON/,
    );
    expect(notJson.reason).toBe('config_file_invalid');
    fails({ file: 'c.json', readFile: files({ 'c.json': '[1]' }) });
    fails({ argv: ['--config', ''] });
  });

  it('node ids and addresses', () => {
    expectBad({ argv: ['--node-id', ''] }, '--node-id', 'nodeId');
    expectBad({ argv: ['--node-id=-a'] }, '--node-id', 'nodeId', /got "-a"/);
    expectBad({ argv: ['--node-id', 'a b'] }, '--node-id', 'nodeId');
    expectBad({ argv: ['--node-id', 'x'.repeat(64)] }, '--node-id', 'nodeId');
    expectBad({ env: { TIDEMARK_NODE_ID: 'a/b' } }, 'TIDEMARK_NODE_ID', 'nodeId');
    expectBad({ argv: ['--http', '4242'] }, '--http', 'listen.http', /host:port, got "4242"/);
    expectBad({ argv: ['--http', 'host:65536'] }, '--http', 'listen.http');
    expectBad({ argv: ['--grpc', 'ho_st:1'] }, '--grpc', 'listen.grpc');
    expectBad({ argv: ['--grpc', '300.1.1.1:1'] }, '--grpc', 'listen.grpc');
    expectBad({ env: { TIDEMARK_PEER_LISTEN: ':4244' } }, 'TIDEMARK_PEER_LISTEN', 'listen.peer');
    expectBad({ argv: ['--advertise-peer', '0.0.0.0:4244'] }, '--advertise-peer', 'advertisePeer', /dial/);
    expectBad({ argv: ['--advertise-peer', 'h:0'] }, '--advertise-peer', 'advertisePeer');
    expectBad({ argv: ['--data-dir', ''] }, '--data-dir', 'dataDir');
    // Port 0 (any free port) is fine for listening.
    expect(loadConfig({ argv: ['--http', '127.0.0.1:0', '--grpc', '127.0.0.1:0'] }).listen.http).toBe(
      '127.0.0.1:0',
    );
  });

  it('listen addresses must not share a port', () => {
    expectBad(
      { argv: ['--grpc', '0.0.0.0:4242'] },
      '--grpc',
      'listen.grpc',
      /same port as default listen.http/,
    );
    expectBad({ argv: ['--http', '127.0.0.1:4244'] }, 'default listen.peer', 'listen.peer', /--http/);
    expect(loadConfig({ argv: ['--http', '127.0.0.1:9000', '--grpc', '127.0.0.2:9000'] }).listen.grpc).toBe(
      '127.0.0.2:9000',
    );
  });

  it('peers: syntax, ids, addresses, duplicates, self', () => {
    expectBad(
      { argv: ['--node-id', 'a', '--peers', 'a'] },
      '--peers',
      'peers',
      /entry 1 must be id=host:port/,
    );
    expectBad({ argv: ['--node-id', 'a', '--peers', 'a=h:1,,b=h:2'] }, '--peers', 'peers', /entry 2/);
    expectBad({ argv: ['--node-id', 'a', '--peers', ''] }, '--peers', 'peers');
    expectBad({ argv: ['--node-id', 'a', '--peers', 'a=h:1,=h:2'] }, '--peers', 'peers', /invalid node id/);
    expectBad({ argv: ['--node-id', 'a', '--peers', 'a=h:1,a=h:2'] }, '--peers', 'peers', /twice/);
    expectBad(
      { argv: ['--node-id', 'a', '--peers', 'a=h:1,b=h'] },
      '--peers',
      'peers',
      /invalid address "h"/,
    );
    expectBad({ argv: ['--node-id', 'a', '--peers', 'a=h:1,b=0.0.0.0:2'] }, '--peers', 'peers', /dialable/);
    expectBad({ argv: ['--node-id', 'a', '--peers', 'a=h:1,b=h:1'] }, '--peers', 'peers', /same address/);
    const self = expectBad(
      { argv: ['--node-id', 'd', '--peers', THREE] },
      '--peers',
      'peers',
      /must include this node "d" \(from --node-id\)/,
    );
    expect(self.reason).toBe('peers_missing_self');
    expectBad(
      { env: { TIDEMARK_PEERS: 'b=h:1' } },
      'TIDEMARK_PEERS',
      'peers',
      /"tidemark-0" \(from default nodeId\)/,
    );
    expectBad({ file: 'c.json', readFile: files({ 'c.json': { peers: 3 } }) }, 'c.json: peers', 'peers');
    expectBad({ file: 'c.json', readFile: files({ 'c.json': { peers: {} } }) }, 'c.json: peers', 'peers');
    expectBad(
      { file: 'c.json', readFile: files({ 'c.json': { peers: { a: 1 } } }) },
      'c.json: peers',
      'peers',
    );
    expectBad(
      { file: 'c.json', readFile: files({ 'c.json': { peers: [{ id: 'a', address: 'h:1', x: 1 }] } }) },
      'c.json: peers',
      'peers',
      /unknown key "x"/,
    );
  });

  it('advertised peer address must match this node’s peers entry', () => {
    expectBad(
      { argv: ['--node-id', 'a', '--peers', THREE, '--advertise-peer', '10.9.9.9:4244'] },
      '--advertise-peer',
      'advertisePeer',
      /disagrees with this node's entry in --peers \(10.0.0.1:4244\)/,
    );
    expect(loadConfig({ argv: ['--advertise-peer', 'me.example:4244'] }).peers).toEqual([
      { id: 'tidemark-0', address: 'me.example:4244' },
    ]);
    expect(loadConfig({ argv: ['--peer-listen', '10.1.1.1:5000'] }).advertisePeer).toBe('10.1.1.1:5000');
  });

  it('replication must not exceed the node count; heartbeat < election', () => {
    const r = expectBad(
      { argv: ['--replication', '3'] },
      '--replication',
      'replication',
      /\(3\) must not exceed the number of nodes \(1, from default peers\)/,
    );
    expect(r.reason).toBe('replication_exceeds_nodes');
    expectBad(
      { env: { TIDEMARK_REPLICATION: '4', TIDEMARK_NODE_ID: 'a' }, argv: ['--peers', THREE] },
      'TIDEMARK_REPLICATION',
      'replication',
      /from --peers/,
    );
    expectBad(
      { argv: ['--heartbeat-ticks', '10'] },
      '--heartbeat-ticks',
      'raft.heartbeatTicks',
      /\(10\) must be less than default raft.electionTicks \(10\)/,
    );
    expectBad(
      { env: { TIDEMARK_ELECTION_TICKS: '3' }, argv: ['--heartbeat-ticks', '3'] },
      '--heartbeat-ticks',
      'raft.heartbeatTicks',
      /TIDEMARK_ELECTION_TICKS/,
    );
  });

  it('resolveNodeConfig names options.<key>', () => {
    try {
      resolveNodeConfig({ raft: { tickMs: 'fast' } });
      throw new Error('expected an error');
    } catch (err) {
      expect((err as TidemarkError).message).toBe(
        'options.raft.tickMs must be an integer in [1, 60000], got "fast"',
      );
      expect((err as TidemarkError).field).toBe('raft.tickMs');
    }
  });
});

describe('StatefulSet mode', () => {
  it('derives node id from the hostname ordinal and peers from the headless service', () => {
    const c = loadConfig({
      argv: ['--peers-from-statefulset', 'tidemark-headless,3'],
      hostname: 'tidemark-2',
    });
    expect(c.nodeId).toBe('tidemark-2');
    expect(c.peers).toEqual([
      { id: 'tidemark-0', address: 'tidemark-0.tidemark-headless:4244' },
      { id: 'tidemark-1', address: 'tidemark-1.tidemark-headless:4244' },
      { id: 'tidemark-2', address: 'tidemark-2.tidemark-headless:4244' },
    ]);
    expect(c.advertisePeer).toBe('tidemark-2.tidemark-headless:4244');
    expect(c.replication).toBe(3);
  });

  it('reads TIDEMARK_STATEFULSET=service,replicas, a separate replica count, the file form and the peer port', () => {
    const env = loadConfig({
      env: { TIDEMARK_STATEFULSET: 'tsdb,5' },
      hostname: 'db-4.tsdb.ns.svc.cluster.local',
    });
    expect(env.nodeId).toBe('db-4');
    expect(env.peers).toHaveLength(5);
    expect(env.peers[0]).toEqual({ id: 'db-0', address: 'db-0.tsdb:4244' });
    const split = loadConfig({
      argv: ['--peers-from-statefulset', 'tsdb', '--peer-listen', '0.0.0.0:7000'],
      env: { TIDEMARK_STATEFULSET_REPLICAS: '2' },
      hostname: 'db-0',
    });
    expect(split.peers).toEqual([
      { id: 'db-0', address: 'db-0.tsdb:7000' },
      { id: 'db-1', address: 'db-1.tsdb:7000' },
    ]);
    expect(split.replication).toBe(2);
    const file = loadConfig({
      file: 'c.json',
      readFile: files({ 'c.json': { statefulset: { service: 'tsdb', replicas: 3 } } }),
      hostname: 'web-1',
    });
    expect(file.nodeId).toBe('web-1');
    // An explicit node id that agrees is fine.
    expect(
      loadConfig({ argv: ['--node-id', 'db-1', '--peers-from-statefulset', 's,2'], hostname: 'db-1' }).nodeId,
    ).toBe('db-1');
  });

  it('the higher-precedence source picks the membership mode; the derived id beats a lower-precedence id', () => {
    const readFile = files({ 'dev.json': { nodeId: 'a', peers: { a: 'localhost:4244' } } });
    // Env StatefulSet mode beats the file's static peers and node id.
    const k8s = loadConfig({
      file: 'dev.json',
      readFile,
      env: { TIDEMARK_STATEFULSET: 'svc,2' },
      hostname: 'db-1',
    });
    expect(k8s.nodeId).toBe('db-1');
    expect(k8s.peers.map((p) => p.id)).toEqual(['db-0', 'db-1']);
    // Flag peers beat env StatefulSet mode.
    const local = loadConfig({
      env: { TIDEMARK_STATEFULSET: 'svc,2' },
      argv: ['--node-id', 'x', '--peers', 'x=h:1'],
      hostname: 'db-1',
    });
    expect(local.peers).toEqual([{ id: 'x', address: 'h:1' }]);
    expect(local.nodeId).toBe('x');
  });

  it('rejects bad StatefulSet settings naming the source', () => {
    expectBad(
      { argv: ['--peers-from-statefulset', 'svc'], hostname: 'db-0' },
      '--peers-from-statefulset',
      'statefulset.replicas',
      /replica count/,
    );
    expectBad(
      { argv: ['--peers-from-statefulset', 'svc,x'], hostname: 'db-0' },
      '--peers-from-statefulset',
      'statefulset.replicas',
      /got "x"/,
    );
    expectBad(
      { argv: ['--peers-from-statefulset', 'svc,0'], hostname: 'db-0' },
      '--peers-from-statefulset',
      'statefulset.replicas',
    );
    expectBad(
      { argv: ['--peers-from-statefulset', 'svc,3,4'], hostname: 'db-0' },
      '--peers-from-statefulset',
      'statefulset.service',
    );
    expectBad(
      { argv: ['--peers-from-statefulset', 'Svc_1,3'], hostname: 'db-0' },
      '--peers-from-statefulset',
      'statefulset.service',
    );
    expectBad(
      { env: { TIDEMARK_STATEFULSET: 'svc,3' } },
      'TIDEMARK_STATEFULSET',
      'statefulset.service',
      /hostname "<name>-<ordinal>", got ""/,
    );
    expectBad(
      { env: { TIDEMARK_STATEFULSET: 'svc,3' }, hostname: 'laptop' },
      'TIDEMARK_STATEFULSET',
      'statefulset.service',
      /got "laptop"/,
    );
    const ord = expectBad(
      { env: { TIDEMARK_STATEFULSET: 'svc,3' }, hostname: 'db-3' },
      'TIDEMARK_STATEFULSET',
      'statefulset.replicas',
      /ordinal 3/,
    );
    expect(ord.reason).toBe('statefulset_ordinal_out_of_range');
    expectBad(
      { argv: ['--peers', 'a=h:1', '--peers-from-statefulset', 'svc,3'], hostname: 'db-0' },
      '--peers',
      'peers',
      /cannot be combined with StatefulSet mode \(--peers-from-statefulset\)/,
    );
    expectBad(
      { argv: ['--node-id', 'db-2', '--peers-from-statefulset', 'svc,3'], hostname: 'db-0' },
      '--node-id',
      'nodeId',
      /disagrees with the id derived from hostname "db-0"/,
    );
    expectBad(
      { argv: ['--statefulset-replicas', '3'] },
      '--statefulset-replicas',
      'statefulset.replicas',
      /StatefulSet mode is off/,
    );
    expectBad(
      { argv: ['--peers-from-statefulset', 'svc,2', '--replication', '3'], hostname: 'db-0' },
      '--replication',
      'replication',
      /from --peers-from-statefulset/,
    );
  });
});

describe('docs/configuration.md', () => {
  it('documents every setting: key, flag, variable', () => {
    const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    for (const s of SETTINGS) {
      const row = doc.split('\n').find((line) => line.startsWith(`| \`${s.key}\` |`));
      expect(row, s.key).toBeDefined();
      expect(row).toContain(`\`--${s.flag}\``);
      expect(row).toContain(`\`${s.env}\``);
      if (s.range) expect(row).toContain(`[${s.range[0]}, ${s.range[1]}]`);
    }
  });
});

describe('splitHostPort', () => {
  it('accepts DNS names, IPv4 and bracketed IPv6; rejects the rest', () => {
    expect(splitHostPort('a.b-c.example:80')).toEqual({ host: 'a.b-c.example', port: 80 });
    expect(splitHostPort('10.0.0.1:0')).toEqual({ host: '10.0.0.1', port: 0 });
    expect(splitHostPort('[::1]:4244')).toEqual({ host: '[::1]', port: 4244 });
    for (const bad of [
      '',
      ':1',
      'h:',
      'h:-1',
      'h:65536',
      'h:1x',
      '::1:4244',
      '[]:1',
      'a..b:1',
      '-a:1',
      'a-:1',
      '1.2.3:1',
      'h p:1',
    ]) {
      expect(splitHostPort(bad), bad).toBeUndefined();
    }
  });
});

describe('client addresses (peerClients)', () => {
  const peers = 'a=10.0.0.1:4244,b=10.0.0.2:4244,c=10.0.0.3:4244';

  it('are empty by default: only the answering node knows its own', () => {
    expect(loadConfig({ argv: ['--node-id', 'a', '--peers', peers] }).peerClients).toEqual({});
  });

  it('come from --peer-clients, TIDEMARK_PEER_CLIENTS or the file (a string or an object), sorted by id', () => {
    const want = { a: '10.0.0.1:4243', b: 'b.example:5000', c: '[::1]:4243' };
    const text = 'c=[::1]:4243, b=b.example:5000,a=10.0.0.1:4243';
    expect(
      loadConfig({ argv: ['--node-id', 'a', '--peers', peers, '--peer-clients', text] }).peerClients,
    ).toEqual(want);
    expect(
      Object.keys(
        loadConfig({ argv: ['--node-id', 'a', '--peers', peers, '--peer-clients', text] }).peerClients,
      ),
    ).toEqual(['a', 'b', 'c']);
    expect(
      loadConfig({ argv: ['--node-id', 'a', '--peers', peers], env: { TIDEMARK_PEER_CLIENTS: text } })
        .peerClients,
    ).toEqual(want);
    expect(
      loadConfig({
        argv: ['--config', 'c.json', '--node-id', 'a', '--peers', peers],
        readFile: files({ 'c.json': { peerClients: want } }),
      }).peerClients,
    ).toEqual(want);
    // A partial list is fine: the others stay unknown to clients.
    expect(
      loadConfig({ argv: ['--node-id', 'a', '--peers', peers, '--peer-clients', 'b=10.0.0.2:4243'] })
        .peerClients,
    ).toEqual({ b: '10.0.0.2:4243' });
    // Round trip through resolveNodeConfig.
    const c = loadConfig({ argv: ['--node-id', 'a', '--peers', peers, '--peer-clients', text] });
    expect(resolveNodeConfig(JSON.parse(JSON.stringify(c)))).toEqual(c);
  });

  it('are derived in StatefulSet mode from the headless service and the gRPC port; explicit entries win', () => {
    const c = loadConfig({
      argv: ['--peers-from-statefulset', 'tsdb,3', '--grpc', '0.0.0.0:7001'],
      hostname: 'db-1',
    });
    expect(c.peerClients).toEqual({
      'db-0': 'db-0.tsdb:7001',
      'db-1': 'db-1.tsdb:7001',
      'db-2': 'db-2.tsdb:7001',
    });
    const d = loadConfig({
      argv: ['--peers-from-statefulset', 'tsdb,2', '--peer-clients', 'db-0=lb.example:443'],
      hostname: 'db-0',
    });
    expect(d.peerClients).toEqual({ 'db-0': 'lb.example:443', 'db-1': 'db-1.tsdb:4243' });
  });

  it('rejects bad entries naming the source', () => {
    const base = ['--node-id', 'a', '--peers', peers];
    const cases: [LoadConfigInput, string, RegExp][] = [
      [
        { argv: [...base, '--peer-clients', 'a'] },
        'setting_invalid',
        /^--peer-clients entry 1 must be id=host:port/,
      ],
      [
        { argv: [...base, '--peer-clients', ''] },
        'setting_invalid',
        /^--peer-clients must list at least one/,
      ],
      [
        { argv: [...base, '--peer-clients', 'a=0.0.0.0:4243'] },
        'peer_address_invalid',
        /invalid client address/,
      ],
      [{ argv: [...base, '--peer-clients', 'a=h:0'] }, 'peer_address_invalid', /invalid client address/],
      [{ argv: [...base, '--peer-clients', '_x=h:1'] }, 'peer_id_invalid', /invalid node id/],
      [{ argv: [...base, '--peer-clients', 'a=h:1,a=h:2'] }, 'peer_id_duplicate', /lists node id "a" twice/],
      [
        { argv: [...base, '--peer-clients', 'z=h:1'] },
        'peer_clients_unknown_id',
        /^--peer-clients names "z", which is not a node of the cluster \(--peers lists "a", "b", "c"\)/,
      ],
      [
        { argv: [...base], env: { TIDEMARK_PEER_CLIENTS: 'a=h' } },
        'peer_address_invalid',
        /^TIDEMARK_PEER_CLIENTS has an invalid client address "h"/,
      ],
      [
        { argv: ['--config', 'c.json', ...base], readFile: files({ 'c.json': { peerClients: ['a=h:1'] } }) },
        'setting_invalid',
        /^c\.json: peerClients must be "id=host:port,\.\.\." or an object/,
      ],
    ];
    for (const [input, reason, message] of cases) {
      const err = fails(input);
      expect(err.reason, message.source).toBe(reason);
      expect(err.message).toMatch(message);
      expect(err.details.field).toBe('peerClients');
    }
  });
});
