// `npm run image`: the controller + agent container image, without a Docker daemon, reproducibly.
//
//   1. toolchain  mmdebstrap (extract) of gcc + libc6-dev + binutils from the image's Debian release; in it,
//                 the addons of binding.gyp (AF_PACKET frames; libnftables for the fence, dlopen'ed at run
//                 time so no -dev package) are compiled against the image's own glibc and the node binary
//                 (from the npm `node` package) is stripped. Cached by its inputs.
//   2. app        the production npm dependencies (`npm ci --omit=dev`, from package-lock.json), pruned of
//                 what Node never loads (type declarations, source maps, docs), plus bin/ src/ deploy/.
//   3. rootfs     mmdebstrap (extract) of libc6, libstdc++6, iproute2, nftables (and with it libnftables1,
//                 which the fence addon loads), pruned (docs, locales, gconv), with node, the addons and the
//                 app synced in; a tarball, SOURCE_DATE_EPOCH-clamped.
//   4. oci        an OCI layout around that one layer, packed as out/image/egressgw.oci.tar.
//
// Inputs are pinned: Debian package versions in image/debian-lock.json, npm packages in package-lock.json,
// node by the `node` devDependency's exact version, SOURCE_DATE_EPOCH = the last commit's time. When the
// Debian mirror no longer carries a locked version (Debian keeps only the newest of each), the build
// says which and uses the mirror's (or fails, with --strict); --update-lock records the current ones.
//
// Flags: --out DIR (default out/image), --rootfs-dir DIR (stop after step 3 and write a directory: the
// Dockerfile's build stage), --update-lock, --strict, --force (rebuild even when the inputs are unchanged).

import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { transformSync } from 'esbuild';
import { cacheRoot } from '../src/testenv/apiserver-build.ts';
import { RUNTIME_PACKAGES, SUITE, TOOLCHAIN_PACKAGES, lockDrift, mirrorsFromApt, parseRecorded, pinned, recordPackagesHook, run, type DebianLock } from './image/debian.ts';
import { APP_UID, DEFAULT_OUT, IMAGE_CONFIG, LOCK_FILE, ROOT, imageInputs, nodeHeaders, readReport } from './image/inputs.ts';
import { packArchive, sha256File, writeLayout } from './image/oci.ts';


const { values: flags } = parseArgs({
  options: {
    out: { type: 'string' },
    'rootfs-dir': { type: 'string' },
    'update-lock': { type: 'boolean' },
    strict: { type: 'boolean' },
    force: { type: 'boolean' },
  },
});
const OUT = resolve(flags.out ?? DEFAULT_OUT);

const t0 = performance.now();
const secs = (from = t0): string => ((performance.now() - from) / 1000).toFixed(1);
const say = (line: string): void => void process.stderr.write(`image: [${secs()}s] ${line}\n`);
/** mmdebstrap's own progress lines, indented under the step. */
const relay = (line: string): void => {
  if (/^[IWE]: /.test(line)) say(`  ${line}`);
};

/** mmdebstrap with our mirrors; on a locked version gone from the mirror, says so and (unless strict) retries unpinned. */
async function mmdebstrap(what: string, names: string[], locked: Record<string, string> | undefined, args: string[], target: string, recordFile: string): Promise<Record<string, string>> {
  const attempt = (pkgs: string[]): Promise<string> =>
    run('mmdebstrap', [
      '--variant=extract', `--include=${pkgs.join(',')}`, '--aptopt=APT::Install-Recommends "false"',
      `--extract-hook=${recordPackagesHook(recordFile)}`, ...args, SUITE, target, ...mirrorsFromApt(),
    ], { onLine: relay, env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH) } });
  try {
    await attempt(pinned(names, locked));
  } catch (err) {
    const gone = /Version '[^']+' for '[^']+' was not found|has no installation candidate|Unable to locate package/.test((err as { output?: string }).output ?? '');
    if (!locked || !gone) throw err;
    if (flags.strict) throw new Error(`${what}: a locked Debian version is no longer on the mirror (--strict): ${(err as Error).message}`);
    say(`WARNING ${what}: locked Debian versions are gone from the mirror; building with the mirror's current ones (npm run image -- --update-lock records them)`);
    await attempt(names);
  }
  const got = parseRecorded(readFileSync(recordFile, 'utf8'));
  if (locked) for (const line of lockDrift(locked, got)) say(`WARNING ${what}: not the locked version: ${line}`);
  return got;
}

// ---------------------------------------------------------------------------------------------------

const inputs = await imageInputs({ updateLock: flags['update-lock'] === true });
const { epoch: EPOCH, lock, nodeBin, nodeSha, reference, files, compile, toolchainKey, imageKey } = inputs;
const archive = join(OUT, 'egressgw.oci.tar');
const reportFile = join(OUT, 'build.json');

if (!flags['rootfs-dir'] && !flags.force && !flags['update-lock'] && existsSync(archive) && readReport(OUT)?.key === imageKey) {
  say(`up to date: ${relative(process.cwd(), archive)} (inputs ${imageKey}; --force rebuilds)`);
  process.exit(0);
}
say(`building ${reference} (Debian ${SUITE}, SOURCE_DATE_EPOCH=${EPOCH}, inputs ${imageKey})`);
say(`mirrors: ${mirrorsFromApt().join(' | ')}`);

const work = mkdtempSync(join(tmpdir(), 'egressgw-image-'));
const cleanup = (): void => rmSync(work, { recursive: true, force: true });
process.once('exit', cleanup);

try {
  // 1. Toolchain: addon + stripped node, cached by the toolchain inputs.
  const tcDir = join(cacheRoot(), 'image', `toolchain-${toolchainKey}`);
  let toolchainVersions: Record<string, string>;
  if (existsSync(join(tcDir, 'versions.json'))) {
    toolchainVersions = JSON.parse(readFileSync(join(tcDir, 'versions.json'), 'utf8')) as Record<string, string>;
    say(`1/4 toolchain: cached (${tcDir})`);
  } else {
    const t = performance.now();
    say(`1/4 toolchain: gcc from Debian ${SUITE}, compiling ${compile.map((c) => c.name).join(', ')} and stripping node ${process.version}`);
    const input = join(work, 'toolchain-in');
    const output = join(work, 'toolchain-out');
    mkdirSync(join(input, 'include'), { recursive: true });
    mkdirSync(output, { recursive: true });
    cpSync(nodeHeaders(nodeBin), join(input, 'include', 'node'), { recursive: true });
    for (const s of compile.flatMap((c) => c.sources)) copyFileSync(join(ROOT, s), join(input, s.replace(/\//g, '_')));
    copyFileSync(nodeBin, join(input, 'node'));
    const gcc = (c: (typeof compile)[number]): string =>
      `--extract-hook=chroot "$1" /usr/bin/gcc ${c.args.join(' ')} -o /work/${c.name} ${c.sources.map((s) => `/work/${s.replace(/\//g, '_')}`).join(' ')} ${c.libraries.join(' ')}`;
    const record = join(work, 'toolchain-packages.txt');
    toolchainVersions = await mmdebstrap('toolchain', TOOLCHAIN_PACKAGES, lock?.toolchain, [
      `--extract-hook=mkdir -p "$1/work" "$1/tmp"`,
      `--extract-hook=sync-in ${input} /work`,
      ...compile.map(gcc),
      `--extract-hook=chroot "$1" /usr/bin/strip --strip-all -o /work/node.stripped /work/node`,
      `--extract-hook=copy-out ${compile.map((c) => `/work/${c.name}`).join(' ')} /work/node.stripped ${output}`,
    ], '/dev/null', record);
    mkdirSync(tcDir, { recursive: true });
    for (const c of compile) copyFileSync(join(output, c.name), join(tcDir, c.name));
    copyFileSync(join(output, 'node.stripped'), join(tcDir, 'node'));
    writeFileSync(join(tcDir, 'versions.json'), JSON.stringify(toolchainVersions, null, 2) + '\n');
    say(`1/4 toolchain: done in ${secs(t)}s (node ${(statSync(nodeBin).size / 1e6).toFixed(1)} → ${(statSync(join(tcDir, 'node')).size / 1e6).toFixed(1)} MB stripped)`);
  }

  // 2. App: sources and production dependencies, in a staging tree mirrored into the rootfs.
  let t = performance.now();
  const stage = join(work, 'stage');
  const app = join(stage, 'app');
  say('2/4 app: npm ci --omit=dev (production dependencies from package-lock.json)');
  for (const f of files) {
    mkdirSync(dirname(join(app, f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(app, f));
  }
  await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app, onLine: (l) => say(`  ${l}`), env: { ...process.env, npm_config_cache: process.env.npm_config_cache ?? join(cacheRoot(), 'npm') } }).catch((err: Error) => {
    throw new Error(`npm ci in ${app}: ${err.message}`);
  });
  const pruned = pruneNodeModules(join(app, 'node_modules'));
  const minified = minifyNodeModules(join(app, 'node_modules'));
  rmSync(join(app, 'node_modules', '.package-lock.json'), { force: true });
  mkdirSync(join(app, 'build', 'Release'), { recursive: true });
  for (const c of compile) copyFileSync(join(tcDir, c.name), join(app, 'build', 'Release', c.name));
  mkdirSync(join(stage, 'usr', 'local', 'bin'), { recursive: true });
  copyFileSync(join(tcDir, 'node'), join(stage, 'usr', 'local', 'bin', 'node'));
  chmodSync(join(stage, 'usr', 'local', 'bin', 'node'), 0o755);
  mkdirSync(join(stage, 'etc'), { recursive: true });
  writeFileSync(join(stage, 'etc', 'passwd'), `root:x:0:0:root:/root:/usr/sbin/nologin\negressgw:x:${APP_UID}:${APP_UID}:egressgw:/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`);
  writeFileSync(join(stage, 'etc', 'group'), `root:x:0:\negressgw:x:${APP_UID}:\nnogroup:x:65534:\n`);
  writeFileSync(join(stage, 'etc', 'nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n');
  say(`2/4 app: done in ${secs(t)}s (${files.length} files; pruned ${pruned.files} files, ${(pruned.bytes / 1e6).toFixed(1)} MB, from node_modules; whitespace and comments out of its JavaScript: ${(minified.before / 1e6).toFixed(1)} → ${(minified.after / 1e6).toFixed(1)} MB)`);

  // 3. Rootfs: Debian runtime packages + the stage, one reproducible tarball (or a directory).
  t = performance.now();
  say(`3/4 rootfs: ${RUNTIME_PACKAGES.join(', ')} from Debian ${SUITE}`);
  mkdirSync(OUT, { recursive: true });
  const layerTar = join(work, 'layer.tar');
  const target = flags['rootfs-dir'] ? resolve(flags['rootfs-dir']) : layerTar;
  const record = join(work, 'runtime-packages.txt');
  const runtimeVersions = await mmdebstrap('rootfs', RUNTIME_PACKAGES, lock?.runtime, [
    '--extract-hook=' + [
      'cd "$1"',
      // Nothing reads documentation, translations or iconv modules in a container; /etc/resolv.conf and
      // /etc/hostname are the build host's (the runtime mounts its own).
      'rm -rf usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian usr/share/bug usr/lib/x86_64-linux-gnu/gconv etc/resolv.conf etc/hostname',
      'mkdir -p tmp && chmod 1777 tmp',
    ].join(' && '),
    `--extract-hook=sync-in ${stage} /`,
    `--extract-hook=${process.execPath} ${join(import.meta.dirname, 'image', 'prune-rootfs.ts')} "$1" /usr/local/bin/node /bin/ip /usr/sbin/nft /usr/sbin/conntrack ${compile.map((c) => `/app/build/Release/${c.name}`).join(' ')}`,
    // Modes independent of the build machine's umask: readable by everyone, writable by root only.
    '--extract-hook=chmod -R u+rwX,go+rX,go-w "$1/app" "$1/usr/local/bin/node" && chown -R 0:0 "$1/app" "$1/usr/local/bin/node" "$1/etc/passwd" "$1/etc/group" "$1/etc/nsswitch.conf"',
    ...(flags['rootfs-dir'] ? ['--format=directory'] : ['--format=tar']),
  ], target, record);
  say(`3/4 rootfs: done in ${secs(t)}s`);

  if (flags['update-lock'] || !existsSync(LOCK_FILE)) {
    const sorted = (r: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1)));
    const next: DebianLock = { suite: SUITE, runtime: sorted(runtimeVersions), toolchain: sorted(toolchainVersions) };
    mkdirSync(dirname(LOCK_FILE), { recursive: true });
    writeFileSync(LOCK_FILE, JSON.stringify(next, null, 2) + '\n');
    say(`wrote ${relative(ROOT, LOCK_FILE)} (${Object.keys(runtimeVersions).length} runtime, ${Object.keys(toolchainVersions).length} toolchain packages)`);
  }
  if (flags['rootfs-dir']) {
    // mmdebstrap made device nodes in /dev; a runtime mounts its own, and `COPY` of device nodes fails.
    if (existsSync(join(target, 'dev'))) for (const e of readdirSync(join(target, 'dev'))) rmSync(join(target, 'dev', e), { recursive: true, force: true });
    say(`rootfs in ${target} (${secs()}s)`);
    process.exit(0);
  }

  // 4. OCI image.
  t = performance.now();
  say('4/4 oci: gzip -n the layer, write config, manifest and index, pack the archive');
  const layout = join(work, 'layout');
  const result = await writeLayout(layout, layerTar, {
    epoch: EPOCH,
    ...IMAGE_CONFIG,
    labels: { 'org.opencontainers.image.title': 'egressgw', 'org.opencontainers.image.version': reference.slice(reference.lastIndexOf(':') + 1) },
    reference,
    createdBy: 'npm run image (scripts/build-image.ts)',
  });
  rmSync(archive, { force: true });
  await packArchive(layout, archive, EPOCH);
  const report = {
    key: imageKey,
    reference,
    archive: relative(ROOT, archive),
    archiveSha256: await sha256File(archive),
    manifestDigest: result.manifest.digest,
    layerDiffId: result.diffId,
    uncompressedBytes: statSync(layerTar).size,
    compressedBytes: result.layer.size,
    sourceDateEpoch: EPOCH,
    debian: { suite: SUITE, runtime: runtimeVersions, toolchain: toolchainVersions },
    node: { version: process.version, sha256: nodeSha },
    buildSeconds: Number(secs()),
  };
  writeFileSync(reportFile, JSON.stringify(report, null, 2) + '\n');
  say(`4/4 oci: done in ${secs(t)}s`);
  say(`${relative(process.cwd(), archive)}: ${reference}, ${(report.uncompressedBytes / 1e6).toFixed(1)} MB uncompressed, ${(report.compressedBytes / 1e6).toFixed(1)} MB compressed`);
  say(`manifest ${report.manifestDigest}, archive sha256 ${report.archiveSha256}`);
} catch (err) {
  say(`FAILED: ${(err as Error).message}`);
  process.exitCode = 1;
}

/** Removes what Node never loads from node_modules: type declarations, source maps, docs, Bare prebuilds, tests, empty directories. */
function pruneNodeModules(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const drop = /(\.d\.[cm]?ts|\.map|\.md|\.markdown|\.bare|\.ts)$/i;
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        // A package's own test suite (bintrees ships 2 MB of benchmark data in test/).
        if ((e.name === 'test' || e.name === 'tests' || e.name === '__tests__') && existsSync(join(d, 'package.json'))) {
          bytes += du(p);
          files++;
          rmSync(p, { recursive: true });
        } else {
          walk(p);
          // Empty after pruning, or left by an npm that makes scope directories for omitted packages.
          if (readdirSync(p).length === 0) rmSync(p, { recursive: true });
        }
      } else if (drop.test(e.name)) {
        bytes += statSync(p).size;
        files++;
        rmSync(p);
      }
    }
  };
  walk(dir);
  return { files, bytes };
}

/**
 * Whitespace and comments out of node_modules' JavaScript (esbuild, `minifyWhitespace` only: names, syntax
 * and module format stay as they are; license comments stay). @kubernetes/client-node alone ships 25 MB of
 * mostly indented JSDoc, which would put the image over its 150 MB budget.
 */
function minifyNodeModules(dir: string): { before: number; after: number } {
  let before = 0;
  let after = 0;
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && /\.[cm]?js$/.test(e.name)) {
        const code = readFileSync(p, 'utf8');
        let out: string;
        try {
          out = transformSync(code, { loader: 'js', minifyWhitespace: true, legalComments: 'inline', charset: 'utf8', logLevel: 'silent' }).code;
        } catch {
          // Not JavaScript Node could load either (rfc4648 ships a Flow source as index.flow.js): left as it is.
          out = code;
        }
        before += Buffer.byteLength(code);
        after += Buffer.byteLength(out);
        writeFileSync(p, out);
      }
    }
  };
  walk(dir);
  return { before, after };
}

function du(p: string): number {
  const st = statSync(p);
  if (!st.isDirectory()) return st.size;
  return readdirSync(p).reduce((a, n) => a + du(join(p, n)), 0);
}
