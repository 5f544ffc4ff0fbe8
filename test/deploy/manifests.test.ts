/**
 * The Kubernetes manifests (deploy/k8s, rendered by kustomize into deploy/k8s/rendered) and the image
 * (deploy/Dockerfile), validated offline: every rendered object against the Kubernetes schemas, the renders
 * against their inputs, and the project's own rules against the node's real code: probe paths are served by the
 * real HTTP API, ports and the data path agree with the config loader, and every pod's environment, fed to
 * loadConfig with the pod's hostname, yields the StatefulSet identity (node id, peers, client addresses).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bodyHash,
  inputsHash,
  kustomizePath,
  parseRenderedFile,
  ROOT,
  renderAll,
  renderedPath,
  TARGETS,
} from '../../scripts/render-manifests.js';
import { createHttpApi, type HttpApi } from '../../src/api/http.js';
import { MemoryCluster } from '../../src/api/memory-cluster.js';
import {
  CONFIG_ENV,
  DEFAULT_CONFIG,
  loadConfig,
  NON_CONFIG_ENV,
  SETTINGS,
  splitHostPort,
} from '../../src/cluster/config.js';
import { TidemarkError } from '../../src/errors/index.js';
import {
  type DockerStage,
  dockerExec,
  type K8sObject,
  selects,
  typeOf,
  validateObject,
} from './k8s-objects.js';
import {
  containerPort,
  imageEnv,
  load,
  ordinalHost,
  podConfig,
  podEnv,
  probe,
  runtime,
  serviceLinkEnv,
  stages,
} from './manifest.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  bin: Record<string, string>;
};

/**
 * What the node needs between SIGTERM and exit, in seconds: HTTP close (2 s grace for requests in flight),
 * leadership transfers (up to 2 s), replica checkpoints and closes (disk-bound). Generous on purpose: a node
 * killed at the deadline loses nothing acknowledged, but its shards then wait an election timeout.
 */
const SHUTDOWN_BUDGET_S = 30;

const portOf = (address: string): number => splitHostPort(address)!.port;

const memoryBytes = (q: string): number => {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(q)!;
  return Number(m[1]) * 1024 ** ['', 'Ki', 'Mi', 'Gi', 'Ti'].indexOf(m[2] ?? '');
};

// ---------------------------------------------------------------------------------------------------------

describe('the strict schema check', () => {
  const sts = load('base').sts;

  it('accepts the StatefulSet as rendered', () => {
    expect(validateObject(sts)).toEqual([]);
  });

  it('rejects a wrong type and reports a misspelt field', () => {
    const bad = structuredClone(sts);
    bad.spec.replicas = '3';
    bad.spec.template.spec.containers[0].readinesProbe = bad.spec.template.spec.containers[0].readinessProbe;
    bad.spec.template.metadata.lables = { a: 'b' };
    const problems = validateObject(bad);
    expect(problems.some((p) => p.includes('replicas must be integer'))).toBe(true);
    expect(problems).toContain('/spec/template/spec/containers/0/readinesProbe: unknown field');
    expect(problems).toContain('/spec/template/metadata/lables: unknown field');
    expect(problems).toHaveLength(3);
  });
});

/** Every target re-rendered by the pinned kustomize, once, when it is installed. */
let fresh: Map<string, string> | undefined;

describe.each(Object.keys(TARGETS))('rendered manifests: %s', (name) => {
  const text = readFileSync(renderedPath(name), 'utf8');
  const t = load(name);

  it('is the kustomize output of the current deploy/k8s (not stale, not edited by hand)', () => {
    const recorded = parseRenderedFile(text);
    const fix = 'run `npx tsx scripts/render-manifests.ts` and commit deploy/k8s/rendered';
    expect(recorded.inputs, `deploy/k8s changed since the render: ${fix}`).toBe(inputsHash());
    expect(bodyHash(recorded.body), `the render was edited by hand: ${fix}`).toBe(recorded.output);
    // With the pinned kustomize installed (scripts/render-manifests.ts --fetch), also re-render for real.
    if (existsSync(kustomizePath())) {
      fresh ??= renderAll(kustomizePath());
      expect(fresh.get(name), fix).toBe(text);
    }
  });

  it('every object is valid against its Kubernetes schema, without unknown fields', () => {
    for (const o of t.objects) expect(validateObject(o), `${typeOf(o)} ${o.metadata?.name}`).toEqual([]);
  });

  it('keeps everything in one namespace', () => {
    const namespaced = t.objects.filter((o) => o.kind !== 'Namespace');
    const spaces = new Set(namespaced.map((o) => o.metadata.namespace));
    expect(spaces.size).toBe(1);
    for (const ns of t.objects.filter((o) => o.kind === 'Namespace'))
      expect(spaces.has(ns.metadata.name)).toBe(true);
  });

  it('runs an odd number >= 3 of pods, started in parallel, each with its own volume', () => {
    const { spec } = t.sts;
    expect(t.replicas).toBeGreaterThanOrEqual(3);
    expect(t.replicas % 2).toBe(1);
    expect(spec.podManagementPolicy).toBe('Parallel');
    expect(spec.updateStrategy.type).toBe('RollingUpdate');
    expect(selects(spec.selector.matchLabels, t.podLabels)).toBe(true);
    const data = t.container.volumeMounts.find((m: K8sObject) => m.mountPath === imageEnv.TIDEMARK_DATA_DIR);
    expect(data, 'a volume mounted at the data directory').toBeDefined();
    const claim = spec.volumeClaimTemplates.find((c: K8sObject) => c.metadata.name === data.name);
    expect(claim, 'the data volume is a volumeClaimTemplate (a PVC per pod)').toBeDefined();
    expect(claim.spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(spec.persistentVolumeClaimRetentionPolicy).toEqual({
      whenDeleted: 'Retain',
      whenScaled: 'Retain',
    });
  });

  it('spreads pods over Kubernetes nodes and zones, preferably', () => {
    const terms = t.pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution;
    expect(
      terms.some(
        (w: K8sObject) =>
          w.podAffinityTerm.topologyKey === 'kubernetes.io/hostname' &&
          selects(w.podAffinityTerm.labelSelector.matchLabels, t.podLabels),
      ),
    ).toBe(true);
    const zone = t.pod.topologySpreadConstraints.find(
      (c: K8sObject) => c.topologyKey === 'topology.kubernetes.io/zone',
    );
    expect(zone.maxSkew).toBe(1);
    expect(selects(zone.labelSelector.matchLabels, t.podLabels)).toBe(true);
  });

  it('sizes resources: requests, a memory limit above the V8 heap, no CPU limit', () => {
    const { requests, limits } = t.container.resources;
    expect(requests.cpu).toBeDefined();
    expect(requests.memory).toBeDefined();
    expect(limits.cpu, 'a CPU limit throttles Raft heartbeats').toBeUndefined();
    const heap = /--max-old-space-size=(\d+)/.exec(podEnv(t).NODE_OPTIONS ?? '');
    expect(heap, 'NODE_OPTIONS sets the V8 heap').not.toBeNull();
    expect(Number(heap![1]) * 1024 * 1024).toBeLessThanOrEqual(0.75 * memoryBytes(limits.memory));
  });

  it('gives SIGTERM enough time to hand leaderships off, after the preStop pause', () => {
    const sleep = t.container.lifecycle?.preStop?.exec?.command;
    const pause = sleep?.[0] === 'sleep' ? Number(sleep[1]) : 0;
    expect(t.pod.terminationGracePeriodSeconds - pause).toBeGreaterThanOrEqual(SHUTDOWN_BUDGET_S);
  });

  it('probes readiness on /readyz and startup on /healthz at the HTTP port, and has no liveness probe', () => {
    const config = podConfig(t, 0);
    expect(t.container.livenessProbe).toBeUndefined();
    const ready = probe(t, 'readinessProbe');
    const startup = probe(t, 'startupProbe');
    expect(ready).toEqual({ path: '/readyz', port: portOf(config.listen.http) });
    expect(startup).toEqual({ path: '/healthz', port: portOf(config.listen.http) });
    // Startup may take long (replicas are opened before HTTP listens): allow at least 5 minutes.
    const s = t.container.startupProbe;
    expect(s.periodSeconds * s.failureThreshold).toBeGreaterThanOrEqual(300);
  });

  it('exposes the ports the node listens on, through the headless and the client Service', () => {
    const config = podConfig(t, 0);
    expect(containerPort(t, 'http')).toBe(portOf(config.listen.http));
    expect(containerPort(t, 'grpc')).toBe(portOf(config.listen.grpc));
    expect(containerPort(t, 'peer')).toBe(portOf(config.listen.peer));
    const { headless } = t;
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(selects(headless.spec.selector, t.podLabels)).toBe(true);
    const peer = headless.spec.ports.find((p: K8sObject) => p.name === 'peer');
    expect(containerPort(t, peer.targetPort)).toBe(portOf(config.listen.peer));
    const clients = t.services.filter((s) => s !== headless);
    expect(clients).toHaveLength(1);
    const client = clients[0]!;
    expect(client.spec.publishNotReadyAddresses ?? false).toBe(false);
    expect(selects(client.spec.selector, t.podLabels)).toBe(true);
    const byName = Object.fromEntries(
      client.spec.ports.map((p: K8sObject) => [p.name, containerPort(t, p.targetPort)]),
    );
    expect(byName).toEqual({ http: portOf(config.listen.http), grpc: portOf(config.listen.grpc) });
  });

  it('has a PodDisruptionBudget of one unavailable pod that selects the pods', () => {
    const pdbs = t.objects.filter((o) => o.kind === 'PodDisruptionBudget');
    expect(pdbs).toHaveLength(1);
    expect(pdbs[0]!.spec.maxUnavailable).toBe(1);
    expect(selects(pdbs[0]!.spec.selector.matchLabels, t.podLabels)).toBe(true);
  });

  it('is scraped once: by annotations, or by a ServiceMonitor on the headless Service', () => {
    const config = podConfig(t, 0);
    const ann = t.sts.spec.template.metadata.annotations;
    expect(ann['prometheus.io/path']).toBe('/metrics');
    expect(Number(ann['prometheus.io/port'])).toBe(portOf(config.listen.http));
    const monitors = t.objects.filter((o) => o.kind === 'ServiceMonitor');
    expect(ann['prometheus.io/scrape']).toBe(monitors.length === 0 ? 'true' : 'false');
    for (const m of monitors) {
      const matched = t.services.filter((s) => selects(m.spec.selector.matchLabels, s.metadata.labels));
      // The headless Service lists pods that are not ready, whose metrics matter most.
      expect(matched).toEqual([t.headless]);
      for (const e of m.spec.endpoints) {
        expect(e.path).toBe('/metrics');
        const port = t.headless.spec.ports.find((p: K8sObject) => p.name === e.port);
        expect(containerPort(t, port.targetPort)).toBe(portOf(config.listen.http));
      }
    }
  });

  it('runs the image of this version with `start`, as the image user, secrets optional', () => {
    const { container, pod } = t;
    const image = container.image as string;
    expect(image.slice(image.lastIndexOf(':') + 1)).toBe(pkg.version);
    expect(image.slice(0, image.lastIndexOf(':'))).toMatch(/(^|\/)tidemark$/);
    expect(container.command, 'the image entrypoint (the tidemark CLI) is used').toBeUndefined();
    expect(container.args[0]).toBe('start');
    const [uid, gid] = dockerUser(runtime);
    expect([pod.securityContext.runAsUser, pod.securityContext.runAsGroup]).toEqual([uid, gid]);
    expect(pod.securityContext.fsGroup, 'the data volume is writable by the node').toBe(gid);
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const v of pod.volumes.filter((x: K8sObject) => x.secret !== undefined)) {
      expect(v.secret.optional, `Secret volume ${v.name} must not block the pod`).toBe(true);
    }
  });

  it('sets only real TIDEMARK_* settings, and Kubernetes injects none (service links off)', () => {
    const known = new Set([...SETTINGS.map((s) => s.env), CONFIG_ENV, ...NON_CONFIG_ENV]);
    const env = podEnv(t);
    for (const k of Object.keys(env)) if (k.startsWith('TIDEMARK_')) expect(known, k).toContain(k);
    // With service links on, the Service named "tidemark" alone would stop every pod at start.
    const withLinks = { ...env, ...serviceLinkEnv(t.services) };
    expect(() => podConfig(t, 0, withLinks)).toThrow(/TIDEMARK_SERVICE_HOST is not a known setting/);
    expect(t.pod.enableServiceLinks).toBe(false);
  });

  it('gives every pod its StatefulSet identity through loadConfig', () => {
    const stsName = t.sts.metadata.name as string;
    const service = t.sts.spec.serviceName as string;
    const expectedPeers = Array.from({ length: t.replicas }, (_, j) => ({
      id: `${stsName}-${j}`,
      address: `${stsName}-${j}.${service}:${containerPort(t, 'peer')}`,
    })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const expectedClients = Object.fromEntries(
      expectedPeers.map((p) => [p.id, `${p.id}.${service}:${containerPort(t, 'grpc')}`]),
    );
    const dataMount = t.container.volumeMounts.find((m: K8sObject) => m.name === 'data').mountPath;
    for (let i = 0; i < t.replicas; i++) {
      const c = podConfig(t, i);
      expect(c.nodeId).toBe(ordinalHost(t, i));
      expect(c.peers).toEqual(expectedPeers);
      expect(c.advertisePeer).toBe(expectedPeers.find((p) => p.id === c.nodeId)!.address);
      expect(c.peerClients).toEqual(expectedClients);
      expect(c.dataDir).toBe(dataMount);
      expect(c.replication).toBeGreaterThanOrEqual(3);
      expect(c.replication).toBeLessThanOrEqual(t.replicas);
      expect(c.replication % 2).toBe(1);
    }
    // TIDEMARK_STATEFULSET's replica count is spec.replicas: one pod more has no place in the cluster.
    let err: unknown;
    try {
      podConfig(t, t.replicas);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TidemarkError);
    expect((err as TidemarkError).reason).toBe('statefulset_ordinal_out_of_range');
  });
});

function dockerUser(stage: DockerStage): [number, number] {
  const user = stage.instructions.filter((i) => i.op === 'USER').at(-1)?.args ?? '';
  const m = /^(\d+):(\d+)$/.exec(user);
  expect(m, `USER ${user} is numeric uid:gid (runAsNonRoot can only verify a numeric user)`).not.toBeNull();
  return [Number(m![1]), Number(m![2])];
}

describe('deploy/Dockerfile', () => {
  it('builds on one exact Node 20 version in every stage', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const froms = new Set(stages.map((s) => s.from));
    expect(froms.size).toBe(1);
    expect([...froms][0]).toMatch(/^node:20\.\d+\.\d+-[a-z]+-slim$/);
  });

  it('ships production dependencies only, built in an earlier stage', () => {
    const build = stages.find(
      (s) => s.name !== undefined && runtime.instructions.some((i) => i.args.includes(`--from=${s.name}`)),
    );
    expect(build).toBeDefined();
    const runs = build!.instructions
      .filter((i) => i.op === 'RUN')
      .map((i) => i.args)
      .join(' ');
    expect(runs).toMatch(/npm ci\b/);
    expect(runs).toMatch(/npm prune --omit=dev\b/);
    expect(runtime.instructions.some((i) => i.op === 'RUN' && /npm (ci|install)/.test(i.args))).toBe(false);
    expect(
      runtime.instructions.some((i) => i.op === 'COPY' && /--from=\S+ .*node_modules/.test(i.args)),
    ).toBe(true);
  });

  it('runs `tidemark start` as a non-root user with the data under its volume and the default ports', () => {
    expect(dockerExec(runtime, 'ENTRYPOINT')).toEqual(['node', `/app/${pkg.bin.tidemark}`]);
    expect(dockerExec(runtime, 'CMD')).toEqual(['start']);
    expect(dockerUser(runtime)[0]).toBeGreaterThan(0);
    expect(dockerExec(runtime, 'VOLUME')).toEqual([imageEnv.TIDEMARK_DATA_DIR]);
    const config = loadConfig({ env: imageEnv });
    expect(config.dataDir).toBe(imageEnv.TIDEMARK_DATA_DIR);
    const exposed = runtime.instructions
      .filter((i) => i.op === 'EXPOSE')
      .flatMap((i) => i.args.split(/\s+/).map(Number));
    const { http, grpc, peer } = DEFAULT_CONFIG.listen;
    expect(exposed).toEqual([portOf(http), portOf(grpc), portOf(peer)]);
  });

  it('.dockerignore keeps the context to what the Dockerfile copies', () => {
    const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(ignore[0]).toBe('**');
    const copied = stages
      .flatMap((s) => s.instructions)
      .filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
      .flatMap((i) =>
        i.args
          .split(/\s+/)
          .filter((a) => !a.startsWith('--'))
          .slice(0, -1),
      );
    expect(copied.length).toBeGreaterThan(0);
    for (const src of copied) {
      expect(ignore.includes(`!${src}`) || ignore.includes(`!${src}/**`), `${src} is in the context`).toBe(
        true,
      );
    }
  });
});

describe('the probe and scrape paths are served by the node HTTP API', () => {
  const t = load('base');
  let cluster: MemoryCluster;
  let api: HttpApi;
  let url: string;

  beforeAll(async () => {
    cluster = new MemoryCluster();
    api = createHttpApi({ cluster });
    const { port } = await api.listen('127.0.0.1', 0);
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await api.close(1000);
    await cluster.close();
  });

  it('startup and readiness probes succeed on a ready node; readiness fails while a shard has no leader', async () => {
    const ready = probe(t, 'readinessProbe').path;
    const startup = probe(t, 'startupProbe').path;
    expect((await fetch(url + startup)).status).toBe(200);
    expect((await fetch(url + ready)).status).toBe(200);
    cluster.setShardAvailable(1, false);
    // Kubernetes counts 200-399 as success.
    expect((await fetch(url + ready)).status).toBe(503);
    expect((await fetch(url + startup)).status).toBe(200);
    cluster.setShardAvailable(1, true);
    expect((await fetch(url + ready)).status).toBe(200);
  });

  it('the scrape path serves Prometheus metrics', async () => {
    const res = await fetch(url + t.sts.spec.template.metadata.annotations['prometheus.io/path']);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toMatch(/^# HELP /m);
  });
});
