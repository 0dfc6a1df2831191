// Debian side of `npm run image`: where the packages come from (this machine's apt sources), which
// versions (image/debian-lock.json), and mmdebstrap runs that extract them.
//
// Why mmdebstrap's `extract` variant: the image needs libraries and three tools (ip, nft, conntrack), not a Debian
// system. `extract` unpacks the packages apt resolves, runs no maintainer scripts and needs no Docker
// daemon, and with SOURCE_DATE_EPOCH set its tarball is bit-for-bit reproducible for the same packages.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const SUITE = 'bookworm';
/**
 * What the image runs on: the C library and C++ runtime of `node`, iproute2 for the agent's addresses, nftables
 * (its libnftables1 is what the fence addon loads), conntrack (the Linux data plane lists and seeds SNAT remaps).
 */
export const RUNTIME_PACKAGES = ['libc6', 'libgcc-s1', 'libstdc++6', 'iproute2', 'nftables', 'conntrack'];
/** What builds the addons (AF_PACKET, libnftables) against the image's own glibc, and strips the node binary. */
export const TOOLCHAIN_PACKAGES = ['gcc', 'libc6-dev', 'binutils'];

export interface DebianLock {
  suite: string;
  /** Package → version, the whole closure apt resolved for RUNTIME_PACKAGES / TOOLCHAIN_PACKAGES. */
  runtime: Record<string, string>;
  toolchain: Record<string, string>;
}

export function readLock(file: string): DebianLock | undefined {
  if (!existsSync(file)) return undefined;
  const lock = JSON.parse(readFileSync(file, 'utf8')) as DebianLock;
  if (lock.suite !== SUITE) throw new Error(`${file}: suite ${lock.suite}, the image is built from ${SUITE} (run with --update-lock)`);
  return lock;
}

/**
 * The mirrors to use: the Debian archive and security URIs from this machine's apt sources (deb822
 * `.sources` and one-line `.list` files), with the image's suite. Only Debian's own hosts are reachable
 * from the machines this project builds on, and they are what apt is configured with; a machine without
 * such sources (not Debian) gets deb.debian.org.
 */
export function mirrorsFromApt(etc = '/etc/apt'): string[] {
  const uris = new Set<string>();
  const files: string[] = [];
  if (existsSync(join(etc, 'sources.list'))) files.push(join(etc, 'sources.list'));
  const dir = join(etc, 'sources.list.d');
  if (existsSync(dir)) for (const f of readdirSync(dir).sort()) if (/\.(list|sources)$/.test(f)) files.push(join(dir, f));
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    if (f.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string): string[] => (new RegExp(`^${name}:\\s*(.*)$`, 'mi').exec(stanza)?.[1] ?? '').split(/\s+/).filter(Boolean);
        if (!field('Types').includes('deb') || /^Enabled:\s*no/mi.test(stanza)) continue;
        for (const u of field('URIs')) uris.add(u.replace(/\/+$/, ''));
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)/.exec(line);
        if (m) uris.add(m[1]!.replace(/\/+$/, ''));
      }
    }
  }
  const archive = [...uris].find((u) => /\/debian$/.test(u)) ?? 'http://deb.debian.org/debian';
  const security = [...uris].find((u) => /\/debian-security$/.test(u)) ?? archive.replace(/\/debian$/, '/debian-security');
  return [
    `deb ${archive} ${SUITE} main`,
    `deb ${archive} ${SUITE}-updates main`,
    `deb ${security} ${SUITE}-security main`,
  ];
}

export interface RunOptions {
  /** Called with each line the command prints (mmdebstrap's progress goes to stderr). */
  onLine?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs a command; rejects with its last output lines when it fails. */
export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    // stdin closed: mmdebstrap reads sources from a non-terminal stdin when it has no mirror arguments.
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env, cwd: o.cwd });
    let stdout = '';
    const tail: string[] = [];
    const lines = (chunk: Buffer, keep: boolean): void => {
      const text = chunk.toString();
      if (keep) stdout += text;
      for (const l of text.split('\n')) {
        if (l.trim() === '') continue;
        tail.push(l);
        if (tail.length > 30) tail.shift();
        if (!keep) o.onLine?.(l);
      }
    };
    child.stdout.on('data', (b: Buffer) => lines(b, true));
    child.stderr.on('data', (b: Buffer) => lines(b, false));
    child.once('error', (err) => reject(new Error(`${cmd}: ${err.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve(stdout);
      else reject(Object.assign(new Error(`${cmd} ${signal ? `killed by ${signal}` : `exited ${code}`}:\n${tail.join('\n')}`), { output: tail.join('\n') }));
    });
  });
}

/** Package names with their locked versions (`pkg=version`), or the bare names without a lock. */
export function pinned(names: string[], locked: Record<string, string> | undefined): string[] {
  if (!locked) return names;
  return Object.entries(locked).sort(([a], [b]) => (a < b ? -1 : 1)).map(([p, v]) => `${p}=${v}`);
}

/** The hook that records which packages apt extracted (`package=version` lines) into `file`. */
export function recordPackagesHook(file: string): string {
  return `for f in "$1"/var/cache/apt/archives/*.deb; do dpkg-deb --show --showformat='\${Package}=\${Version}\\n' "$f"; done | sort > '${file}'`;
}

export function parseRecorded(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** Packages whose versions differ between two locks, as `name: a → b` lines. */
export function lockDrift(want: Record<string, string>, got: Record<string, string>): string[] {
  const names = [...new Set([...Object.keys(want), ...Object.keys(got)])].sort();
  return names.filter((n) => want[n] !== got[n]).map((n) => `${n}: ${want[n] ?? '(none)'} → ${got[n] ?? '(none)'}`);
}
