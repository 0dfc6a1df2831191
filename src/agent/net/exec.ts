// System commands as child processes: `ip`, `nft` (nft.ts: nftCli), sysctls. `netns` runs everything
// inside a network namespace (`ip netns exec`), for tests, the bench and the lab.

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
