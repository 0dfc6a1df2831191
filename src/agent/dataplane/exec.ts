// The few system commands the Linux data plane runs: `nft` (a whole-table transaction, or a JSON listing),
// `ip`, and sysctls. Data-plane changes are infrequent (a pod, a policy, a failover), so a short-lived
// `nft -f -` per change is enough; the long-lived nft runner of the dead-man's switch is a separate part.
// `netns` runs everything inside a network namespace (`ip netns exec`), for tests and the lab.

import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';

export class CommandFailed extends Error {
  readonly command: string;
  readonly stderr: string;
  /** The binary is not installed (ENOENT). */
  readonly missing: boolean;
  constructor(command: string, stderr: string, missing: boolean) {
    super(missing ? `${command.split(' ')[0]} is not installed or not on PATH` : `${command} failed: ${stderr.trim() || 'no output'}`);
    this.name = 'CommandFailed';
    this.command = command;
    this.stderr = stderr;
    this.missing = missing;
  }
}

export interface Runner {
  /** Runs `cmd args…` (inside the namespace, if any), feeding `input` on stdin; resolves stdout. */
  run(cmd: string, args: readonly string[], input?: string): Promise<string>;
  /**
   * Writes a sysctl given as its /proc/sys path components (a device name may contain dots). In our own
   * namespace a file write (the image carries no sysctl binary); in another, `sysctl` through `ip netns exec`.
   */
  sysctl(path: readonly string[], value: string): Promise<void>;
}

export interface RunnerOptions {
  netns?: string;
  timeoutMs?: number;
  /** Replaces PATH lookups for one binary (tests: an nft that is "not installed"). */
  binaries?: Readonly<Record<string, string>>;
}

export function createRunner(o: RunnerOptions = {}): Runner {
  const timeout = o.timeoutMs ?? 30_000;
  return {
    async sysctl(path, value) {
      if (o.netns !== undefined) {
        await this.run('sysctl', ['-qw', `${path.map((p) => p.replace(/\./g, '/')).join('.')}=${value}`]);
        return;
      }
      const file = `/proc/sys/${path.join('/')}`;
      try {
        await writeFile(file, value);
      } catch (err) {
        throw new CommandFailed(`write ${file}`, (err as Error).message, false);
      }
    },
    run(cmd, args, input) {
      const bin = o.binaries?.[cmd] ?? cmd;
      const [file, argv] = o.netns === undefined ? [bin, [...args]] : ['ip', ['netns', 'exec', o.netns, bin, ...args]];
      const text = `${cmd} ${args.join(' ')}`;
      return new Promise((resolve, reject) => {
        const child = execFile(file, argv, { timeout, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          const e = err as NodeJS.ErrnoException & { code?: string | number };
          // `ip netns exec` reports a missing binary on stderr with exit status 255.
          const missing = e.code === 'ENOENT' || /exec of ".*" failed: No such file or directory/.test(stderr);
          reject(new CommandFailed(text, stderr || e.message, missing));
        });
        if (input !== undefined) child.stdin?.end(input);
      });
    },
  };
}

export interface Nft {
  /** Checks that nft can run; throws CommandFailed (`missing` when it is not installed). */
  version(): Promise<string>;
  /** One atomic transaction (`nft -f -`). */
  apply(script: string): Promise<void>;
  /**
   * `nft -j list table FAMILY NAME` parsed, or undefined when the table does not exist. `terse` leaves set
   * and map elements out (a cheap existence check on a large table).
   */
  listTable(family: string, name: string, opts?: { terse?: boolean }): Promise<NftJson | undefined>;
  deleteTable(family: string, name: string): Promise<boolean>;
}

export interface NftJson {
  nftables: Array<Record<string, unknown>>;
}

const NO_TABLE = /No such file or directory|does not exist/;

export function createNft(runner: Runner): Nft {
  return {
    async version() {
      return (await runner.run('nft', ['--version'])).trim();
    },
    async apply(script) {
      await runner.run('nft', ['-f', '-'], script);
    },
    async listTable(family, name, opts) {
      try {
        return JSON.parse(await runner.run('nft', [...(opts?.terse ? ['-t'] : []), '-j', 'list', 'table', family, name])) as NftJson;
      } catch (err) {
        if (err instanceof CommandFailed && !err.missing && NO_TABLE.test(err.stderr)) return undefined;
        throw err;
      }
    },
    async deleteTable(family, name) {
      try {
        await runner.run('nft', ['delete', 'table', family, name]);
        return true;
      } catch (err) {
        if (err instanceof CommandFailed && !err.missing && NO_TABLE.test(err.stderr)) return false;
        throw err;
      }
    },
  };
}

/** Elements of a named set or map in a JSON listing, as nft prints them (strings, prefixes, ranges, pairs). */
export function jsonElements(listing: NftJson | undefined, kind: 'set' | 'map', name: string): unknown[] {
  for (const o of listing?.nftables ?? []) {
    const s = o[kind] as { name?: string; elem?: unknown[] } | undefined;
    if (s?.name === name) return s.elem ?? [];
  }
  return [];
}

/** Names of the objects of one kind (chain, set, map) in a JSON listing. */
export function jsonNames(listing: NftJson | undefined, kind: 'chain' | 'set' | 'map'): string[] {
  const out: string[] = [];
  for (const o of listing?.nftables ?? []) {
    const s = o[kind] as { name?: string } | undefined;
    if (typeof s?.name === 'string') out.push(s.name);
  }
  return out.sort();
}
