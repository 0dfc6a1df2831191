// Builds (or finds) the test API server and etcd binaries.
//
// Nothing here touches the machine's own apt setup: a private apt configuration in the cache fetches
// Debian's Go toolchain, the Kubernetes Go libraries (golang-k8s-*-dev) and etcd-server as .debs,
// `dpkg -x` unpacks them under the cache, and `go build` compiles testenv/apiserver in GOPATH mode
// against the unpacked sources. The result is cached under a key of our Go sources + package list,
// outside the repository, so re-runs on the same machine take milliseconds.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const goSourceDir = join(repoRoot, 'testenv', 'apiserver');

/** Debian packages whose closure is unpacked to build the server. */
export const debianPackages = [
  'golang-go',
  'golang-k8s-apiextensions-apiserver-dev',
  'golang-k8s-apiserver-dev',
  'golang-k8s-client-go-dev',
  'golang-k8s-api-dev',
  'etcd-server',
];
const debianSource = 'deb http://deb.debian.org/debian unstable main';
// Bump when the build recipe changes in a way the key would not see.
const recipeVersion = '2';

export interface ApiserverBinaries {
  apiserver: string;
  etcd: string;
  dir: string;
}

export interface BuildOptions {
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

export function cacheRoot(): string {
  if (process.env.EGRESSGW_CACHE) return resolve(process.env.EGRESSGW_CACHE);
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(xdg, 'egressgw');
}

export function buildKey(srcDir = goSourceDir): string {
  const h = createHash('sha256');
  h.update(`recipe ${recipeVersion}\n${debianSource}\n${debianPackages.join(' ')}\n`);
  for (const f of readdirSync(srcDir).filter((n) => n.endsWith('.go')).sort()) {
    h.update(`${f}\n`);
    h.update(readFileSync(join(srcDir, f)));
  }
  return h.digest('hex').slice(0, 16);
}

/** The cached binaries for the current sources, or undefined when they still have to be built. */
export function cachedBinaries(): ApiserverBinaries | undefined {
  const dir = join(cacheRoot(), 'bin', buildKey());
  const bins = { apiserver: join(dir, 'apiserver'), etcd: join(dir, 'etcd'), dir };
  return existsSync(join(dir, '.complete')) ? bins : undefined;
}

class BuildError extends Error {}

/** Returns the binaries, building them first if needed. Safe to call from parallel processes. */
export async function ensureApiserverBinaries(opts: BuildOptions = {}): Promise<ApiserverBinaries> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const started = performance.now();
  const cached = cachedBinaries();
  if (cached) {
    log(`test apiserver: cached in ${cached.dir} (${secs(started)}s)`);
    return cached;
  }
  const root = cacheRoot();
  mkdirSync(root, { recursive: true });
  const release = await lock(join(root, 'build.lock'), log);
  try {
    const again = cachedBinaries();
    if (again) {
      log(`test apiserver: built by another process, in ${again.dir} (${secs(started)}s)`);
      return again;
    }
    const bins = await build(root, log, started);
    log(`test apiserver: built in ${secs(started)}s -> ${bins.dir}`);
    return bins;
  } finally {
    release();
  }
}

function secs(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

async function lock(path: string, log: (l: string) => void): Promise<() => void> {
  let said = false;
  for (;;) {
    try {
      mkdirSync(path);
      writeFileSync(join(path, 'pid'), String(process.pid));
      return () => rmSync(path, { recursive: true, force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    // A lock whose owner died is stale: take it over.
    let owner = NaN;
    try {
      owner = Number(readFileSync(join(path, 'pid'), 'utf8'));
    } catch {
      // pid not written yet, or lock just released
    }
    if (Number.isInteger(owner) && owner > 0 && !alive(owner)) {
      rmSync(path, { recursive: true, force: true });
      continue;
    }
    if (!said) {
      log(`test apiserver: waiting for another build (lock ${path}, pid ${owner})`);
      said = true;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function build(root: string, log: (l: string) => void, started: number): Promise<ApiserverBinaries> {
  const logFile = join(root, 'build.log');
  writeFileSync(logFile, `build started ${new Date().toISOString()}\n`);
  const step = (name: string) => log(`test apiserver: [${secs(started)}s] ${name}`);
  const run = (what: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, cwd = root) =>
    runLogged(what, cmd, args, { env, cwd, logFile, onTick: (s) => log(`test apiserver: [${secs(started)}s]   ${what}: ${s}s ...`) });

  // 1. Private apt configuration: our own lists, an empty dpkg status (so apt computes the whole
  //    closure) and our own archive directory. The system's sources and state are not read.
  const apt = join(root, 'apt');
  for (const d of ['state/lists/partial', 'cache/archives/partial', 'etc/sources.list.d', 'etc/preferences.d']) mkdirSync(join(apt, d), { recursive: true });
  writeFileSync(join(apt, 'status'), '');
  writeFileSync(join(apt, 'etc', 'sources.list'), `${debianSource}\n`);
  const aptConf = join(apt, 'apt.conf');
  writeFileSync(
    aptConf,
    [
      `Dir::State "${apt}/state";`,
      `Dir::State::Lists "${apt}/state/lists";`,
      `Dir::State::status "${apt}/status";`,
      `Dir::Cache "${apt}/cache";`,
      `Dir::Cache::Archives "${apt}/cache/archives";`,
      `Dir::Etc::SourceList "${apt}/etc/sources.list";`,
      `Dir::Etc::SourceParts "${apt}/etc/sources.list.d";`,
      `Dir::Etc::Preferences "${apt}/etc/preferences";`,
      `Dir::Etc::PreferencesParts "${apt}/etc/preferences.d";`,
      `APT::Architecture "amd64";`,
      `APT::Architectures { "amd64"; };`,
      `APT::Sandbox::User "root";`,
      `APT::Install-Recommends "false";`,
      '',
    ].join('\n'),
  );
  const aptEnv = { ...process.env, APT_CONFIG: aptConf, DEBIAN_FRONTEND: 'noninteractive' };

  step('apt-get update (Debian unstable, private apt state)');
  await run('apt-get update', 'apt-get', ['-q', 'update'], aptEnv);

  step('resolving package closure');
  // apt prints only what is not yet downloaded, so point it at an empty archive dir for the full list.
  const emptyArchives = join(apt, 'empty-archives');
  mkdirSync(join(emptyArchives, 'partial'), { recursive: true });
  const printed = await run('apt-get --print-uris', 'apt-get', ['-o', `Dir::Cache::Archives=${emptyArchives}`, '--print-uris', '-y', '-q', '--no-install-recommends', 'install', ...debianPackages], aptEnv);
  const debs = [...printed.matchAll(/^'([^']+)' (\S+\.deb) (\d+) /gm)].map((m) => ({ uri: m[1]!, file: m[2]!, size: Number(m[3]) }));
  if (debs.length === 0) throw new BuildError(`apt-get printed no packages to fetch (see ${logFile})`);
  const totalMB = debs.reduce((a, d) => a + d.size, 0) / 1e6;
  step(`downloading ${debs.length} packages, ${totalMB.toFixed(0)} MB`);
  const archives = join(apt, 'cache', 'archives');
  const progress = setInterval(() => {
    const have = debs.filter((d) => existsSync(join(archives, d.file)));
    const mb = have.reduce((a, d) => a + d.size, 0) / 1e6;
    log(`test apiserver: [${secs(started)}s]   downloaded ${have.length}/${debs.length} packages, ${mb.toFixed(0)}/${totalMB.toFixed(0)} MB`);
  }, 5000);
  try {
    await run('apt-get download', 'apt-get', ['-y', '-q', '--no-install-recommends', '--download-only', 'install', ...debianPackages], aptEnv);
  } finally {
    clearInterval(progress);
  }
  const missing = debs.filter((d) => !existsSync(join(archives, d.file)));
  if (missing.length) throw new BuildError(`${missing.length} packages were not downloaded, e.g. ${missing[0]!.file} (see ${logFile})`);

  // 2. Unpack only what the build uses: Go, the Go library sources and etcd. Other packages in
  //    the closure (libc, systemd, ...) are runtime dependencies of a real install, not needed here.
  const wanted = debs.filter((d) => /^(golang-|etcd-)/.test(d.file));
  const unpackKey = createHash('sha256').update(wanted.map((d) => d.file).join('\n')).digest('hex');
  const unpacked = join(root, 'root');
  const stamp = join(unpacked, '.unpacked');
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== unpackKey) {
    if (existsSync(unpacked)) {
      step('removing an outdated unpacked tree');
      rmSync(unpacked, { recursive: true, force: true });
    }
    mkdirSync(unpacked, { recursive: true });
    step(`unpacking ${wanted.length} packages`);
    let n = 0;
    for (const d of wanted) {
      await run(`dpkg -x ${d.file}`, 'dpkg', ['-x', join(archives, d.file), unpacked]);
      if (++n % 50 === 0) log(`test apiserver: [${secs(started)}s]   unpacked ${n}/${wanted.length}`);
    }
    writeFileSync(stamp, unpackKey);
  } else {
    step('packages already unpacked');
  }

  // 3. Compile in GOPATH mode against Debian's library tree, static (no cgo).
  const goroot = realpathSync(join(unpacked, 'usr', 'lib', 'go'));
  const go = join(goroot, 'bin', 'go');
  const etcdSrc = join(unpacked, 'usr', 'bin', 'etcd');
  if (!existsSync(go)) throw new BuildError(`Go toolchain not found at ${go} after unpacking (see ${logFile})`);
  if (!existsSync(etcdSrc)) throw new BuildError(`etcd not found at ${etcdSrc} after unpacking (see ${logFile})`);
  // Build from a snapshot of the sources, so the key always matches what was compiled even if
  // someone edits testenv/apiserver meanwhile.
  const srcSnap = join(root, `src-${process.pid}`);
  rmSync(srcSnap, { recursive: true, force: true });
  mkdirSync(srcSnap, { recursive: true });
  for (const f of readdirSync(goSourceDir).filter((n) => n.endsWith('.go'))) copyFileSync(join(goSourceDir, f), join(srcSnap, f));
  const key = buildKey(srcSnap);
  const out = join(root, 'bin', key);
  const tmp = `${out}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const goEnv: NodeJS.ProcessEnv = {
    ...process.env,
    GO111MODULE: 'off',
    GOPATH: join(unpacked, 'usr', 'share', 'gocode'),
    GOROOT: goroot,
    GOCACHE: join(root, 'gocache'),
    GOTOOLCHAIN: 'local',
    GOPROXY: 'off',
    GOFLAGS: '',
    CGO_ENABLED: '0',
  };
  step(`compiling testenv/apiserver with ${readFileSync(join(goroot, 'VERSION'), 'utf8').split('\n')[0]} (a cold build takes a few minutes)`);
  // Stamp the Kubernetes version of the libraries (golang-k8s-apiserver-dev 0.X.Y is Kubernetes
  // 1.X.Y), so /version and the effective (emulation) version are real ones.
  const libVersion = /^golang-k8s-apiserver-dev_0\.(\d+)\.(\d+)/.exec(debs.find((d) => d.file.startsWith('golang-k8s-apiserver-dev_'))?.file ?? '');
  const ldflags = libVersion
    ? ['-ldflags', ['gitVersion=v1.' + libVersion[1] + '.' + libVersion[2], 'gitMajor=1', 'gitMinor=' + libVersion[1]].map((v) => `-X k8s.io/component-base/version.${v}`).join(' ')]
    : [];
  try {
    await run('go build', go, ['build', ...ldflags, '-o', join(tmp, 'apiserver'), '.'], goEnv, srcSnap);
  } finally {
    rmSync(srcSnap, { recursive: true, force: true });
  }
  copyFileSync(etcdSrc, join(tmp, 'etcd'));
  chmodSync(join(tmp, 'etcd'), 0o755);
  writeFileSync(join(tmp, '.complete'), `${new Date().toISOString()}\n`);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(dirname(out), { recursive: true });
  renameSync(tmp, out);
  pruneOldBuilds(join(root, 'bin'), 4);
  const size = (statSync(join(out, 'apiserver')).size / 1e6).toFixed(0);
  step(`apiserver ${size} MB and etcd copied to ${out}`);
  return { apiserver: join(out, 'apiserver'), etcd: join(out, 'etcd'), dir: out };
}

/** Keeps the newest `keep` builds (each ~120 MB); older source versions are rebuilt on demand. */
function pruneOldBuilds(binRoot: string, keep: number): void {
  const dirs = readdirSync(binRoot)
    .filter((d) => /^[0-9a-f]{16}$/.test(d))
    .map((d) => ({ d, t: statSync(join(binRoot, d)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const { d } of dirs.slice(keep)) rmSync(join(binRoot, d), { recursive: true, force: true });
}

interface RunOpts {
  env: NodeJS.ProcessEnv;
  cwd: string;
  logFile: string;
  onTick: (elapsedSeconds: number) => void;
}

/** Runs a command with output appended to the build log; resolves to its stdout. */
function runLogged(what: string, cmd: string, args: string[], o: RunOpts): Promise<string> {
  appendFileSync(o.logFile, `\n$ ${cmd} ${args.join(' ')}\n`);
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      appendFileSync(o.logFile, b);
    });
    child.stderr.on('data', (b: Buffer) => appendFileSync(o.logFile, b));
    const tick = setInterval(() => o.onTick(Math.round((performance.now() - t0) / 1000)), 15000);
    child.on('error', (e) => {
      clearInterval(tick);
      reject(new BuildError(`${what} could not start: ${e.message} (log: ${o.logFile})`));
    });
    child.on('close', (code, signal) => {
      clearInterval(tick);
      if (code === 0) resolvePromise(stdout);
      else {
        const tail = readFileSync(o.logFile, 'utf8').trimEnd().split('\n').slice(-25).join('\n');
        reject(new BuildError(`${what} failed (${signal ?? `exit ${code}`}); last lines of ${o.logFile}:\n${tail}`));
      }
    });
  });
}
