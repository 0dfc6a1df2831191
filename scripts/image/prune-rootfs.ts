// mmdebstrap hook of `npm run image`: keeps in the rootfs only the programs the image runs and the shared
// libraries they load, as the image's own dynamic loader resolves them (`ld.so --list` in a chroot), so
// the result does not depend on the build host's tools. Debian packages bring more (tc, ss, debconf,
// libssl for Kerberos for tc's RPC...); none of it is reachable from node, ip, nft or conntrack.
//
// Usage (as a hook): node scripts/image/prune-rootfs.ts ROOT PROGRAM...   (programs as absolute paths in ROOT)
// Then every program is run once (`--version`) in the chroot, so a pruned-away library fails the build.

import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join, posix } from 'node:path';

const LOADER = '/lib64/ld-linux-x86-64.so.2';
const LIB_DIRS = ['/lib', '/lib64', '/usr/lib'];
const BIN_DIRS = ['/bin', '/sbin', '/usr/bin', '/usr/sbin'];
/** Data the kept programs read: iproute2's name tables (rt_tables, rt_protos...). */
const KEEP_SHARE = ['iproute2'];

const [root, ...programs] = process.argv.slice(2);
if (!root || programs.length === 0) {
  console.error('usage: prune-rootfs.ts ROOT PROGRAM...');
  process.exit(2);
}

/**
 * A path inside the root and every symlink on the way to the file it names (absolute links are taken
 * as inside the root). Parent directories are not symlinks in an `extract` rootfs (no merged /usr).
 */
function chain(path: string, out: Set<string>): void {
  let p = path;
  for (let i = 0; i < 40; i++) {
    out.add(p);
    const st = lstatSync(join(root!, p), { throwIfNoEntry: false });
    if (!st) throw new Error(`${p} does not exist in ${root}`);
    if (!st.isSymbolicLink()) return;
    const target = readlinkSync(join(root!, p));
    p = target.startsWith('/') ? target : posix.normalize(posix.join(posix.dirname(p), target));
  }
  throw new Error(`${path}: too many symlinks`);
}

const keep = new Set<string>();
for (const prog of programs) {
  chain(prog, keep);
  const listed = execFileSync('chroot', [root, LOADER, '--list', prog], { encoding: 'utf8' });
  for (const line of listed.split('\n')) {
    if (/not found/.test(line)) throw new Error(`${prog}: ${line.trim()}`);
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (m) chain(m[1]!, keep);
  }
}

let removed = 0;
function prune(dir: string, isKept: (p: string) => boolean): void {
  const abs = join(root!, dir);
  if (!existsSync(abs) || lstatSync(abs).isSymbolicLink()) return;
  for (const e of readdirSync(abs, { withFileTypes: true })) {
    const p = posix.join(dir, e.name);
    if (e.isDirectory()) {
      prune(p, isKept);
      if (readdirSync(join(root!, p)).length === 0) rmSync(join(root!, p), { recursive: true });
    } else if (!isKept(p)) {
      rmSync(join(root!, p));
      removed++;
    }
  }
}
for (const d of [...LIB_DIRS, ...BIN_DIRS]) prune(d, (p) => keep.has(p));
prune('/usr/share', (p) => KEEP_SHARE.some((k) => p.startsWith(`/usr/share/${k}/`)));
prune('/usr/include', () => false);

for (const prog of programs.filter((p) => !p.endsWith('.node'))) {
  const args = prog.endsWith('/node') ? ['--version'] : prog.endsWith('/ip') ? ['-V'] : ['--version'];
  execFileSync('chroot', [root, prog, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}
console.error(`I: prune-rootfs: kept ${keep.size} paths for ${programs.join(', ')}; removed ${removed} files`);
