// Controller replicas of the test environment as processes, the way the Deployment runs them: each
// `egressgw controller` with leader election on, in a namespace of its own on the management bridge (so a
// fault proxy tells the replicas apart by address), authenticating as a user of its own (so the API
// server's audit log tells their writes apart), with its output in `<logDir>/controller-<name>.log`.
//
// A supervisor plays the kubelet (restartPolicy Always): a replica that exits is started again after
// `restartDelayMs`. Every exit is recorded, and one that the test did not cause itself (kill()) is a
// crash. `ip netns exec` execs the command, so the child's PID is the controller's own and signals
// (SIGKILL, SIGSTOP…) reach it directly.

import type { ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '../kube/client.ts';
import type { Network } from './netns.ts';
import { BIN } from './paths.ts';

export interface ControllerExit {
  at: number;
  replica: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The test killed it (kill()); otherwise it exited by itself: a crash. */
  expected: boolean;
}

/** A log line of a replica at level warn or above (pino's numeric levels: 40 warn, 50 error, 60 fatal). */
export interface ControllerLogLine {
  at: number;
  replica: string;
  level: number;
  msg: string;
  line: string;
}

export interface ReplicaSpec {
  /** Short name: the namespace `<id>-ctl-<name>`, the identity and the user `egressgw-controller-<name>`. */
  name: string;
  /** Its address on the management bridge (200–249). */
  hostNumber: number;
}

export interface ControllerReplicasOptions {
  /** The client configuration for a user (the test API server's clientFor, pointed at a proxy if any). */
  kubeConfigFor: (user: string) => KubeConfig;
  logDir: string;
  /** Extra flags for every replica. */
  args?: string[];
  /** Delay before a replica that exited is started again (default 500 ms). */
  restartDelayMs?: number;
}

export interface ControllerReplica {
  readonly name: string;
  readonly identity: string;
  readonly user: string;
  readonly ns: string;
  /** Its address: a fault proxy's scope for this replica. */
  readonly ip: string;
  /** The running process's PID (0 between an exit and the restart). */
  pid(): number;
  alive(): boolean;
}

interface Slot extends ControllerReplica {
  child: ChildProcess | undefined;
  /** Signals the test sent that end the process: its next exit is expected. */
  killing: boolean;
  restartTimer: NodeJS.Timeout | undefined;
  kubeconfigPath: string;
}

export class ControllerReplicas {
  readonly #net: Network;
  readonly #opts: ControllerReplicasOptions;
  readonly #slots = new Map<string, Slot>();
  readonly #logs: WriteStream[] = [];
  #closed = false;
  /** Every exit so far, in order. */
  readonly exits: ControllerExit[] = [];
  /** Lines at warn and above, in order (a round reads those after its start). */
  readonly problems: ControllerLogLine[] = [];
  /** Every log message by replica (for waiting on what a replica reports). */
  readonly #messages = new Map<string, string[]>();

  private constructor(net: Network, opts: ControllerReplicasOptions) {
    this.#net = net;
    this.#opts = opts;
  }

  /** Creates the namespaces and starts every replica. */
  static async start(net: Network, replicas: readonly ReplicaSpec[], opts: ControllerReplicasOptions): Promise<ControllerReplicas> {
    const r = new ControllerReplicas(net, opts);
    for (const spec of replicas) {
      const host = await net.addManagementHost(`ctl-${spec.name}`, spec.hostNumber);
      const user = `egressgw-controller-${spec.name}`;
      const kubeconfigPath = join(opts.logDir, `controller-${spec.name}.kubeconfig`);
      writeFileSync(kubeconfigPath, opts.kubeConfigFor(user).exportConfig());
      const slot: Slot = {
        name: spec.name,
        identity: `ctl-${spec.name}`,
        user,
        ns: host.ns,
        ip: host.ip,
        kubeconfigPath,
        child: undefined,
        killing: false,
        restartTimer: undefined,
        pid: () => slot.child?.pid ?? 0,
        alive: () => slot.child !== undefined && slot.child.exitCode === null && slot.child.signalCode === null,
      };
      r.#slots.set(spec.name, slot);
      r.#messages.set(spec.name, []);
      r.#spawn(slot);
    }
    return r;
  }

  get replicas(): ControllerReplica[] {
    return [...this.#slots.values()];
  }

  replica(name: string): ControllerReplica {
    const s = this.#slots.get(name);
    if (!s) throw new Error(`no controller replica ${name}`);
    return s;
  }

  /** The replica whose identity is `identity` (the leader Lease's holder). */
  byIdentity(identity: string): ControllerReplica | undefined {
    return [...this.#slots.values()].find((s) => s.identity === identity);
  }

  /** Messages the replica's processes logged so far (all of its incarnations). */
  messages(name: string): readonly string[] {
    return this.#messages.get(name) ?? [];
  }

  /**
   * Sends `signal` to the replica. SIGKILL and SIGTERM end it: that exit is expected, and the supervisor
   * starts it again as after any exit. SIGSTOP and SIGCONT freeze and resume it.
   */
  signal(name: string, signal: NodeJS.Signals): void {
    const s = this.#slots.get(name);
    if (!s?.child || !s.alive()) return;
    if (signal === 'SIGKILL' || signal === 'SIGTERM') {
      s.killing = true;
      // A frozen process handles SIGTERM only once continued.
      s.child.kill('SIGCONT');
    }
    s.child.kill(signal);
  }

  /** Every replica runs (none frozen, none waiting to restart): continues frozen ones, starts missing ones. */
  heal(): void {
    for (const s of this.#slots.values()) {
      if (s.alive()) s.child!.kill('SIGCONT');
      else if (s.restartTimer !== undefined) {
        clearTimeout(s.restartTimer);
        s.restartTimer = undefined;
        this.#spawn(s);
      }
    }
  }

  /** Stops every replica (SIGTERM, then SIGKILL) without restarting them. */
  async close(): Promise<void> {
    this.#closed = true;
    const waits: Promise<unknown>[] = [];
    for (const s of this.#slots.values()) {
      clearTimeout(s.restartTimer);
      const child = s.child;
      if (child && s.alive()) {
        s.killing = true;
        waits.push(new Promise((r) => child.once('exit', r)));
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => clearTimeout(t));
      }
    }
    await Promise.all(waits);
    for (const l of this.#logs) l.end();
  }

  #spawn(s: Slot): void {
    const out = createWriteStream(join(this.#opts.logDir, `controller-${s.name}.log`), { flags: 'a' });
    this.#logs.push(out);
    const child = this.#net.spawnIn(s.ns, process.execPath, [
      BIN, 'controller', '--kubeconfig', s.kubeconfigPath, '--leader-elect-identity', s.identity, '--metrics-addr=', '--log-level', 'debug',
      ...(this.#opts.args ?? []),
    ]);
    s.child = child;
    s.killing = false;
    child.stdout?.pipe(out, { end: false });
    child.stderr?.pipe(out, { end: false });
    const messages = this.#messages.get(s.name)!;
    let partial = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      const at = Date.now();
      for (const line of lines) {
        let rec: { msg?: unknown; level?: unknown };
        try {
          rec = JSON.parse(line) as typeof rec;
        } catch {
          // Not a log line: anything a crashing Node prints (a stack) is a problem.
          if (line.trim() !== '') this.problems.push({ at, replica: s.name, level: 60, msg: line.trim().slice(0, 200), line });
          continue;
        }
        const msg = typeof rec.msg === 'string' ? rec.msg : '';
        messages.push(msg);
        const level = typeof rec.level === 'number' ? rec.level : LEVELS[String(rec.level)] ?? 30;
        if (level >= 40) this.problems.push({ at, replica: s.name, level, msg, line });
      }
    });
    child.once('exit', (code, signal) => {
      this.exits.push({ at: Date.now(), replica: s.name, code, signal, expected: s.killing });
      if (s.child !== child || this.#closed) return;
      s.restartTimer = setTimeout(() => {
        s.restartTimer = undefined;
        if (!this.#closed) this.#spawn(s);
      }, this.#opts.restartDelayMs ?? 500);
    });
  }
}

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
