/**
 * Helpers of the deployment tests: reading the rendered manifests, validating objects against the Kubernetes
 * schemas of `kubernetes-models` (with a strict check for fields the schema does not know) and parsing the
 * Dockerfile.
 */
import { readFileSync } from 'node:fs';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { parseAllDocuments } from 'yaml';

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML; the schemas check them
export type K8sObject = Record<string, any>;

/** The kinds the manifests use, by `apiVersion/kind`: the model classes carry the OpenAPI schema validators. */
const MODELS: Record<string, { prototype: { validate(): void } }> = {
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/Namespace': Namespace,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

export const typeOf = (o: K8sObject): string => `${o.apiVersion}/${o.kind}`;

/** Every YAML document of a multi-document file, as plain objects (YAML 1.1 as Kubernetes reads it). */
export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text, { version: '1.1' }).map((d) => {
    if (d.errors.length > 0) throw new Error(`YAML error: ${d.errors[0]!.message}`);
    return d.toJS() as K8sObject;
  });
}

/**
 * Validates one object against its schema. Returns the problems: schema errors, plus every field the schema
 * does not define. The OpenAPI schemas allow unknown fields (the API server drops or, with strict field
 * validation, rejects them), so a misspelt `readinesProbe` would pass them silently. The strict check wraps the
 * object in proxies that record which keys the compiled validator reads: a validator reads every property its
 * schema defines and enumerates maps (labels, resources), so a key it never touched is not in the schema.
 */
export function validateObject(o: K8sObject): string[] {
  const model = MODELS[typeOf(o)];
  if (model === undefined) return [`${typeOf(o)} has no schema here (add its model to MODELS)`];
  const seen = new Map<string, { keys: string[]; read: Set<string> }>();
  const problems: string[] = [];
  try {
    model.prototype.validate.call(track(o, '', seen));
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
  }
  const unknown: string[] = [];
  for (const [path, { keys, read }] of seen) {
    for (const k of keys) if (!read.has(k)) unknown.push(`${path}/${k}`);
  }
  // Inside an unknown field nothing is read: report only the outermost one.
  for (const u of unknown) {
    if (!unknown.some((v) => u.startsWith(`${v}/`))) problems.push(`${u}: unknown field`);
  }
  return problems;
}

function track(
  value: unknown,
  path: string,
  seen: Map<string, { keys: string[]; read: Set<string> }>,
): unknown {
  if (Array.isArray(value)) return value.map((v, i) => track(v, `${path}/${i}`, seen));
  if (value === null || typeof value !== 'object') return value;
  const read = new Set<string>();
  const keys = Object.keys(value);
  seen.set(path, { keys, read });
  const wrapped = Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, track(v, `${path}/${k}`, seen)]),
  );
  return new Proxy(wrapped, {
    get(target, key, receiver) {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key, receiver);
    },
    ownKeys(target) {
      for (const k of Reflect.ownKeys(target)) if (typeof k === 'string') read.add(k);
      return Reflect.ownKeys(target);
    },
  });
}

/** True when every `matchLabels` entry is among `labels` (the selectors used here are matchLabels only). */
export function selects(
  selector: Record<string, string> | undefined,
  labels: Record<string, string>,
): boolean {
  if (selector === undefined || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

// ---------------------------------------------------------------------------------------------------------
// Dockerfile

export interface DockerStage {
  from: string;
  name?: string;
  instructions: { op: string; args: string }[];
}

/** Stages and instructions of a Dockerfile (continuations joined, comments dropped). */
export function parseDockerfile(path: string): DockerStage[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  const logical: string[] = [];
  let cur = '';
  for (const raw of lines) {
    const line = raw.trim();
    if (cur === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) cur += `${line.slice(0, -1)} `;
    else {
      logical.push(cur + line);
      cur = '';
    }
  }
  const stages: DockerStage[] = [];
  for (const l of logical) {
    const m = /^(\w+)\s+(.*)$/.exec(l);
    if (m === null) continue;
    const op = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      stages.push({ from: f[1]!, name: f[2], instructions: [] });
    } else stages.at(-1)?.instructions.push({ op, args });
  }
  return stages;
}

/** `ENV A=1 B=2` of a stage, in order. */
export function dockerEnv(stage: DockerStage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { op, args } of stage.instructions) {
    if (op !== 'ENV') continue;
    for (const m of args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) {
      env[m[1]!] = m[2]!.startsWith('"') ? JSON.parse(m[2]!) : m[2]!;
    }
  }
  return env;
}

/** The last JSON-array (exec form) argument of `op` in a stage. */
export function dockerExec(stage: DockerStage, op: string): string[] | undefined {
  const last = stage.instructions.filter((i) => i.op === op).at(-1);
  return last === undefined ? undefined : (JSON.parse(last.args) as string[]);
}
