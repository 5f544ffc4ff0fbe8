/**
 * The rendered StatefulSet of one kustomize target, picked apart, and the environment and configuration its pods
 * get: shared by the manifest validation and the rolling-restart test.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { parseRenderedFile, ROOT, renderedPath } from '../../scripts/render-manifests.js';
import { loadConfig, type NodeConfig } from '../../src/cluster/config.js';
import { dockerEnv, type K8sObject, parseDockerfile, parseManifests } from './k8s-objects.js';

export const stages = parseDockerfile(join(ROOT, 'deploy/Dockerfile'));
export const runtime = stages.at(-1)!;
/** The image's ENV (the final stage). */
export const imageEnv = dockerEnv(runtime);

export interface Target {
  name: string;
  objects: K8sObject[];
  sts: K8sObject;
  pod: K8sObject;
  container: K8sObject;
  podLabels: Record<string, string>;
  services: K8sObject[];
  headless: K8sObject;
  replicas: number;
}

export function load(name: string): Target {
  const { body } = parseRenderedFile(readFileSync(renderedPath(name), 'utf8'));
  const objects = parseManifests(body);
  const sets = objects.filter((o) => o.kind === 'StatefulSet');
  expect(sets, `${name}: exactly one StatefulSet`).toHaveLength(1);
  const sts = sets[0]!;
  const pod = sts.spec.template.spec;
  expect(pod.containers, `${name}: one container`).toHaveLength(1);
  const services = objects.filter((o) => o.kind === 'Service');
  const headless = services.find((s) => s.metadata.name === sts.spec.serviceName);
  expect(headless, `${name}: the Service named by serviceName ${sts.spec.serviceName}`).toBeDefined();
  return {
    name,
    objects,
    sts,
    pod,
    container: pod.containers[0],
    podLabels: sts.spec.template.metadata.labels,
    services,
    headless: headless!,
    replicas: sts.spec.replicas,
  };
}

/**
 * The variables Kubernetes injects for every Service with a cluster IP in the namespace unless
 * enableServiceLinks is false ("docker links": `<NAME>_SERVICE_HOST`, `<NAME>_PORT_<port>_TCP`, ...).
 */
export function serviceLinkEnv(services: K8sObject[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const s of services) {
    if (s.spec.clusterIP === 'None') continue;
    const n = s.metadata.name.toUpperCase().replaceAll('-', '_');
    const ip = '10.96.0.10';
    const first = s.spec.ports[0];
    env[`${n}_SERVICE_HOST`] = ip;
    env[`${n}_SERVICE_PORT`] = String(first.port);
    env[`${n}_PORT`] = `tcp://${ip}:${first.port}`;
    for (const p of s.spec.ports) {
      const proto = (p.protocol ?? 'TCP') as string;
      const base = `${n}_PORT_${p.port}_${proto}`;
      env[base] = `${proto.toLowerCase()}://${ip}:${p.port}`;
      env[`${base}_PROTO`] = proto.toLowerCase();
      env[`${base}_PORT`] = String(p.port);
      env[`${base}_ADDR`] = ip;
      if (p.name) env[`${n}_SERVICE_PORT_${p.name.toUpperCase().replaceAll('-', '_')}`] = String(p.port);
    }
  }
  return env;
}

/** The container's environment as the kubelet builds it: image ENV < service links < envFrom < env. */
export function podEnv(t: Target): Record<string, string> {
  const env: Record<string, string> = { ...imageEnv };
  if (t.pod.enableServiceLinks !== false) Object.assign(env, serviceLinkEnv(t.services));
  for (const from of t.container.envFrom ?? []) {
    const name = from.configMapRef?.name;
    const cm = t.objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name);
    expect(cm, `${t.name}: envFrom names ConfigMap ${name}, which must be rendered too`).toBeDefined();
    Object.assign(env, cm!.data);
  }
  for (const e of t.container.env ?? []) {
    // A TIDEMARK_* value from the downward API or a Secret could not be checked here: keep them literal.
    expect(e.name.startsWith('TIDEMARK_') ? e.value : '', `${t.name}: ${e.name} is a literal`).toBeTypeOf(
      'string',
    );
    env[e.name] = e.value ?? '';
  }
  return env;
}

export const ordinalHost = (t: Target, i: number): string => `${t.sts.metadata.name}-${i}`;

export function podConfig(t: Target, ordinal: number, env = podEnv(t)): NodeConfig {
  return loadConfig({ argv: t.container.args.slice(1), env, hostname: ordinalHost(t, ordinal) });
}

export function containerPort(t: Target, name: string | number): number {
  if (typeof name === 'number') return name;
  const p = (t.container.ports as K8sObject[]).find((x) => x.name === name);
  expect(p, `${t.name}: container port named ${name}`).toBeDefined();
  return p!.containerPort;
}

export function probe(t: Target, kind: string): { path: string; port: number } {
  const get = t.container[kind]?.httpGet;
  expect(get, `${t.name}: ${kind} is an HTTP GET`).toBeDefined();
  return { path: get.path, port: containerPort(t, get.port) };
}
