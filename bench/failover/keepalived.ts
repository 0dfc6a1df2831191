// keepalived (Debian package) as the comparison the issue asks for: VRRP between LAN hosts of the test
// network, one VIP per group, every host `state BACKUP` with equal priority and `nopreempt` (the closest
// to egressgw's sticky, no-failback election), VRRPv3 so that sub-second adverts are allowed.
//
// keepalived runs as a parent and a VRRP child process. "Killing the daemon" kills both with SIGKILL
// (the child would otherwise notice its parent's death and shut down cleanly, removing the VIP), and
// "freezing" it stops both.

import { execFile, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Network } from '../../src/testenv/netns.ts';

const execFileAsync = promisify(execFile);

export interface KeepalivedHost {
  name: string;
  ns: string;
  ifname: string;
  ip: string;
  mac: string;
}

export interface KeepalivedOptions {
  /** VRRP advert interval, seconds (1 or 0.1). */
  advertSeconds: number;
  /** 1–255, one per group on the LAN. */
  routerId: number;
  vip: string;
  /** Where configs, pid files and logs go. */
  dir: string;
}

export async function keepalivedAvailable(): Promise<string | undefined> {
  try {
    const { stderr, stdout } = await execFileAsync('keepalived', ['--version']);
    return (stderr || stdout).split('\n')[0]?.trim();
  } catch {
    return undefined;
  }
}

export class Keepalived {
  readonly host: KeepalivedHost;
  readonly #net: Network;
  readonly #o: KeepalivedOptions;
  #child: ChildProcess | undefined;

  constructor(net: Network, host: KeepalivedHost, o: KeepalivedOptions) {
    this.#net = net;
    this.host = host;
    this.#o = o;
    mkdirSync(o.dir, { recursive: true });
    writeFileSync(this.#file('conf'), [
      `global_defs {`,
      `  router_id ${host.name}`,
      `  vrrp_version 3`,
      `}`,
      `vrrp_instance VI_${o.routerId} {`,
      `  state BACKUP`,
      `  nopreempt`,
      `  interface ${host.ifname}`,
      `  virtual_router_id ${o.routerId}`,
      `  priority 100`,
      `  advert_int ${o.advertSeconds}`,
      `  virtual_ipaddress {`,
      `    ${o.vip}/32 dev ${host.ifname}`,
      `  }`,
      `}`,
      '',
    ].join('\n'));
  }

  #file(ext: string): string {
    return join(this.#o.dir, `${this.host.name}.${ext}`);
  }

  start(): void {
    // A killed daemon leaves its pid files, and keepalived refuses to start while they name a process
    // (even a zombie not reaped yet).
    for (const f of ['pid', 'vrrp.pid']) rmSync(this.#file(f), { force: true });
    const child = this.#net.spawnIn(this.host.ns, 'keepalived', [
      '--dont-fork', '--log-console', '--vrrp', '--use-file', this.#file('conf'),
      '--pid', this.#file('pid'), '--vrrp_pid', this.#file('vrrp.pid'),
    ]);
    const log = createWriteStream(this.#file('log'), { flags: 'a' });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.once('exit', () => log.end());
    this.#child = child;
  }

  /** Parent and VRRP child, the child first. */
  async #pids(): Promise<number[]> {
    const parent = this.#child?.pid;
    if (parent === undefined || this.#child?.exitCode !== null || this.#child.signalCode !== null) return [];
    const { stdout } = await execFileAsync('pgrep', ['-P', String(parent)]).catch(() => ({ stdout: '' }));
    return [...stdout.split('\n').filter((l) => l.trim() !== '').map(Number), parent];
  }

  async signal(sig: 'SIGKILL' | 'SIGSTOP' | 'SIGCONT'): Promise<void> {
    const pids = await this.#pids();
    for (const pid of sig === 'SIGCONT' ? [...pids].reverse() : pids) {
      try {
        process.kill(pid, sig);
      } catch {
        // gone already
      }
    }
  }

  /** Kills it (if running) and waits for the exit. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await this.signal('SIGCONT');
    await this.signal('SIGKILL');
    await exited;
  }

  /** Removes the VIP from the host's interface (what an operator does after a daemon died holding it). */
  async dropVip(): Promise<void> {
    await this.#net.ip(this.host.ns, ['addr', 'del', `${this.#o.vip}/32`, 'dev', this.host.ifname]).catch(() => undefined);
  }

  async holdsVip(): Promise<boolean> {
    return this.#net.hasAddress(this.host.ns, this.#o.vip);
  }
}
