/**
 * Renders the Kubernetes manifests with real kustomize into checked-in files, one per kustomization:
 *
 *   npx tsx scripts/render-manifests.ts           fetch the pinned kustomize (once) and render deploy/k8s/rendered/*
 *   npx tsx scripts/render-manifests.ts --check   exit 1 if a rendered file is stale (or was edited by hand)
 *   npx tsx scripts/render-manifests.ts --fetch   only install the pinned kustomize; prints its path
 *
 * Why a checked-in render: the files are exactly what `kustomize build` produces (what an operator applies), CI
 * validates them offline without a kustomize binary, and a diff review shows what a manifest change does.
 * Each file starts with two hashes: of every input under deploy/k8s (so a changed input without a re-render
 * fails the test) and of its own body (so a hand edit fails too). When the pinned binary is installed,
 * test/deploy/manifests.test.ts also re-renders and compares byte for byte.
 *
 * The binary is `go install`ed into ${XDG_CACHE_HOME:-~/.cache}/tidemark/bin/kustomize-<version> (outside the
 * repository; the Go module cache keeps the download), like the other tools the project fetches.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** Pinned; v5.8+ needs Go >= 1.27. The binary name carries the version, so a new pin installs next to the old. */
export const KUSTOMIZE_VERSION = 'v5.7.1';
const KUSTOMIZE_MODULE = 'sigs.k8s.io/kustomize/kustomize/v5';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Inputs: everything under deploy/k8s except the rendered output. */
export const K8S_DIR = 'deploy/k8s';
export const RENDERED_DIR = 'deploy/k8s/rendered';

/** Every kustomization that is rendered: output name → directory (relative to the repository root). */
export const TARGETS: Readonly<Record<string, string>> = Object.freeze({
  base: 'deploy/k8s/base',
  production: 'deploy/k8s/overlays/production',
  kafka: 'deploy/k8s/overlays/kafka',
});

export function kustomizePath(): string {
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'tidemark', 'bin', `kustomize-${KUSTOMIZE_VERSION}`);
}

/** Installs the pinned kustomize with `go install` unless present; returns its path. */
export function fetchKustomize(): string {
  const target = kustomizePath();
  if (existsSync(target)) return target;
  mkdirSync(dirname(target), { recursive: true });
  const gobin = mkdtempSync(join(dirname(target), '.kustomize-'));
  try {
    execFileSync('go', ['install', `${KUSTOMIZE_MODULE}@${KUSTOMIZE_VERSION}`], {
      env: { ...process.env, GOBIN: gobin, GOFLAGS: '-buildvcs=false' },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    renameSync(join(gobin, 'kustomize'), target);
  } catch (err) {
    throw new Error(
      `could not install kustomize ${KUSTOMIZE_VERSION} with Go (${err instanceof Error ? err.message : err}); ` +
        `install Go >= 1.24, or put the release binary from https://github.com/kubernetes-sigs/kustomize/releases at ${target}`,
    );
  } finally {
    rmSync(gobin, { recursive: true, force: true });
  }
  return target;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** sha256 over (path, sha256(content)) of every input file, sorted by path: any change to deploy/k8s changes it. */
export function inputsHash(root = ROOT): string {
  const rendered = join(root, RENDERED_DIR) + sep;
  const files = listFiles(join(root, K8S_DIR))
    .filter((p) => !p.startsWith(rendered))
    .map((p) => relative(root, p).split(sep).join('/'))
    .sort();
  return sha256(files.map((f) => `${sha256(readFileSync(join(root, f)))}  ${f}\n`).join(''));
}

export interface RenderedFile {
  inputs: string;
  output: string;
  body: string;
}

const HEADER_LINES = 4;

export function renderedFileText(target: string, inputs: string, body: string): string {
  return (
    `# GENERATED from ${TARGETS[target]} by scripts/render-manifests.ts (kustomize ${KUSTOMIZE_VERSION}); do not edit.\n` +
    '# Change deploy/k8s and run `npx tsx scripts/render-manifests.ts`; test/deploy validates this file.\n' +
    `# inputs-sha256: ${inputs}\n` +
    `# output-sha256: ${sha256(body)}\n` +
    body
  );
}

/** Splits a rendered file into its recorded hashes and the kustomize output. */
export function parseRenderedFile(text: string): RenderedFile {
  const lines = text.split('\n');
  const inputs = /^# inputs-sha256: ([0-9a-f]{64})$/.exec(lines[2] ?? '')?.[1];
  const output = /^# output-sha256: ([0-9a-f]{64})$/.exec(lines[3] ?? '')?.[1];
  if (inputs === undefined || output === undefined) throw new Error('rendered file without its hash header');
  return { inputs, output, body: lines.slice(HEADER_LINES).join('\n') };
}

export const bodyHash = sha256;

export function renderedPath(target: string, root = ROOT): string {
  return join(root, RENDERED_DIR, `${target}.yaml`);
}

/** `kustomize build <dir>` of one target. */
export function kustomizeBuild(binary: string, target: string, root = ROOT): string {
  return execFileSync(binary, ['build', join(root, TARGETS[target]!)], {
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** Fresh rendering of every target: name → file text. */
export function renderAll(binary: string, root = ROOT): Map<string, string> {
  const inputs = inputsHash(root);
  const out = new Map<string, string>();
  for (const target of Object.keys(TARGETS)) {
    out.set(target, renderedFileText(target, inputs, kustomizeBuild(binary, target, root)));
  }
  return out;
}

function main(argv: string[]): number {
  if (argv.includes('--fetch')) {
    console.log(fetchKustomize());
    return 0;
  }
  const check = argv.includes('--check');
  const binary = fetchKustomize();
  const fresh = renderAll(binary);
  let stale = 0;
  for (const [target, text] of fresh) {
    const path = renderedPath(target);
    const old = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
    if (old === text) continue;
    if (check) {
      console.error(`${relative(ROOT, path)} is stale: run npx tsx scripts/render-manifests.ts`);
      stale++;
    } else {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
      console.log(`wrote ${relative(ROOT, path)}`);
    }
  }
  return stale === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
