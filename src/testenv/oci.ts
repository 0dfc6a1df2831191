// Runs containers of our OCI image (out/image/egressgw.oci.tar, `npm run image`) with an OCI runtime from
// Debian, as a kubelet would: `umoci unpack` turns the archive into a rootfs and a runtime config; each
// container gets its own config (arguments, environment, user, capabilities, a read-only root, bind
// mounts, the network namespace of a lab node) and runs under `crun`. Needs root.
//
// cgroups: these machines mount cgroup v1 controllers plus a cgroup2 hierarchy that has a controller of
// its own (hybrid mode), which crun refuses to work with even when told not to manage cgroups. Tests do not
// limit resources, so each crun runs with --cgroup-manager=disabled in a private mount namespace without
// that cgroup2 mount (`unshare -m`); crun's state in /run stays shared, so `crun kill` works from outside.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const IMAGE_ARCHIVE = resolve(import.meta.dirname, '..', '..', 'out', 'image', 'egressgw.oci.tar');
const RUNTIME = 'crun';

/** Why containers of the image cannot run here, or undefined when they can. */
export async function imageRunProblem(archive = IMAGE_ARCHIVE): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'running containers needs root';
  if (!existsSync(archive)) return `${archive} does not exist: build it with npm run image`;
  for (const [cmd, args] of [[RUNTIME, ['--version']], ['umoci', ['--version']], ['unshare', ['--version']]] as const) {
    try {
      await execFileAsync(cmd, [...args]);
    } catch (err) {
      return `${cmd} is not usable (${(err as Error).message}); .ci/run installs crun and umoci`;
    }
  }
  return undefined;
}

interface OciConfig {
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities?: Record<'bounding' | 'effective' | 'inheritable' | 'permitted' | 'ambient', string[]>;
    noNewPrivileges?: boolean;
  };
  root: { path: string; readonly?: boolean };
  mounts: Array<{ destination: string; type?: string; source: string; options?: string[] }>;
  linux: { namespaces: Array<{ type: string; path?: string }>; resources?: unknown; [k: string]: unknown };
  [k: string]: unknown;
}

export interface UnpackedImage {
  dir: string;
  rootfs: string;
  /** The runtime config umoci derived from the image config (entrypoint, env, user, working dir). */
  config: OciConfig;
  /** The image config's Entrypoint (a pod's `args` follow it). */
  entrypoint: string[];
  remove(): void;
}

/** Untars the archive and unpacks its one image with umoci. */
export async function unpackImage(archive = IMAGE_ARCHIVE): Promise<UnpackedImage> {
  const dir = mkdtempSync(join(tmpdir(), 'egressgw-oci-'));
  try {
    const layout = join(dir, 'layout');
    mkdirSync(layout);
    await execFileAsync('tar', ['-xf', archive, '-C', layout]);
    const blob = (digest: string): unknown => JSON.parse(readFileSync(join(layout, 'blobs', ...digest.split(':')), 'utf8'));
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
    const tag = index.manifests[0]?.annotations?.['org.opencontainers.image.ref.name'];
    if (!tag) throw new Error(`${archive}: index.json names no image (org.opencontainers.image.ref.name)`);
    const manifest = blob(index.manifests[0]!.digest) as { config: { digest: string } };
    const entrypoint = (blob(manifest.config.digest) as { config?: { Entrypoint?: string[] } }).config?.Entrypoint ?? [];
    const bundle = join(dir, 'bundle');
    await execFileAsync('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle], { maxBuffer: 16 << 20 });
    rmSync(layout, { recursive: true, force: true });
    const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as OciConfig;
    return { dir, rootfs: join(bundle, 'rootfs'), config, entrypoint, remove: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface ContainerSpec {
  /** Arguments after the image's entrypoint (a pod spec's `args`). */
  args: string[];
  env?: Record<string, string>;
  /** Default: the image's user. */
  user?: { uid: number; gid: number };
  /** Linux capabilities (e.g. NET_ADMIN); default none, as `drop: [ALL]`. */
  capabilities?: string[];
  /** Name of a network namespace under /run/netns to run in. */
  netns: string;
  /** Read-only bind mounts: host file or directory → path in the container. */
  binds?: Array<{ source: string; destination: string }>;
}

export class Container {
  readonly id: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #output = '';
  #bundle: string;

  private constructor(id: string, bundle: string, child: ChildProcess) {
    this.id = id;
    this.#bundle = bundle;
    this.child = child;
    const append = (b: Buffer): void => {
      this.#output += b.toString();
      if (this.#output.length > 1 << 20) this.#output = this.#output.slice(-(1 << 19));
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    this.exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  }

  /** What the container printed so far (its log). */
  output(): string {
    return this.#output;
  }

  static start(image: UnpackedImage, spec: ContainerSpec): Container {
    const id = `egressgw-test-${randomBytes(4).toString('hex')}`;
    const bundle = join(image.dir, id);
    mkdirSync(bundle);
    const base = image.config;
    const caps = (spec.capabilities ?? []).map((c) => (c.startsWith('CAP_') ? c : `CAP_${c}`));
    const env = [...base.process.env.filter((e) => !e.startsWith('TERM=')), ...Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`)];
    const config: OciConfig = {
      ...base,
      process: {
        ...base.process,
        terminal: false,
        user: spec.user ?? base.process.user,
        args: [...image.entrypoint, ...spec.args],
        env,
        capabilities: { bounding: caps, effective: caps, inheritable: [], permitted: caps, ambient: [] },
        noNewPrivileges: true,
      },
      // The pods run with readOnlyRootFilesystem: true.
      root: { path: image.rootfs, readonly: true },
      mounts: [
        ...base.mounts.filter((m) => m.type !== 'cgroup'),
        ...(spec.binds ?? []).map((b) => ({ destination: b.destination, type: 'bind', source: b.source, options: ['bind', 'ro'] })),
      ],
      linux: {
        ...base.linux,
        resources: undefined,
        namespaces: [...base.linux.namespaces.filter((n) => n.type !== 'network'), { type: 'network', path: `/run/netns/${spec.netns}` }],
      },
    };
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config, null, 2));
    const script = 'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec "$@"';
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', RUNTIME, '--cgroup-manager=disabled', 'run', '--bundle', bundle, id], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new Container(id, bundle, child);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; then the runtime forgets the container. Idempotent. */
  async stop(graceMs = 5000): Promise<void> {
    const kill = (sig: string) => execFileAsync(RUNTIME, ['kill', this.id, sig]).catch(() => undefined);
    if (this.child.exitCode === null && this.child.signalCode === null) {
      await kill('SIGTERM');
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
      if ((await Promise.race([this.exited, timer])) === 'timeout') {
        await kill('SIGKILL');
        await this.exited;
      }
    }
    await execFileAsync(RUNTIME, ['delete', '--force', this.id]).catch(() => undefined);
    rmSync(this.#bundle, { recursive: true, force: true });
  }
}

/**
 * What a pod's service account gives a container: the token, the cluster CA and the namespace, as files
 * for /var/run/secrets/kubernetes.io/serviceaccount, and the KUBERNETES_SERVICE_* variables; so the
 * components find the API server exactly as they do in a cluster (client-node's in-cluster config). The
 * test API server takes the bearer token as the user name.
 */
export function serviceAccountMount(
  cluster: { server: string; kubeConfig: { getCurrentCluster(): { caData?: string; caFile?: string } | null } },
  namespace: string,
  serviceAccount: string,
  dir: string,
): { bind: { source: string; destination: string }; env: Record<string, string> } {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const c = cluster.kubeConfig.getCurrentCluster();
  const ca = c?.caData ? Buffer.from(c.caData, 'base64') : c?.caFile ? readFileSync(c.caFile) : undefined;
  if (!ca) throw new Error('the test cluster has no CA');
  writeFileSync(join(dir, 'ca.crt'), ca, { mode: 0o644 });
  writeFileSync(join(dir, 'token'), `system:serviceaccount:${namespace}:${serviceAccount}`, { mode: 0o644 });
  writeFileSync(join(dir, 'namespace'), namespace, { mode: 0o644 });
  const url = new URL(cluster.server);
  return {
    bind: { source: dir, destination: '/var/run/secrets/kubernetes.io/serviceaccount' },
    env: { KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port || '443' },
  };
}
