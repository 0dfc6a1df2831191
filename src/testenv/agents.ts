// Agents of the test environment: `egressgw agent` as a child process inside a node's namespace, with
// its output in `<logDir>/agent-<node>.log`. `ip netns exec` execs the command, so the child's PID is the
// agent's own and signals (SIGKILL, SIGSTOP…) reach it directly.

import type { ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_NAMESPACE } from '../api/names.ts';
import type { Network } from './netns.ts';
import { BIN } from './paths.ts';

export interface AgentProcess {
  readonly pid: number;
  /** Undefined for a node whose agent was not started (Agents.none()). */
  readonly child: ChildProcess | undefined;
  /** Resolves with the exit code / signal once the process is gone. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
  alive(): boolean;
  /** Whether this process has logged a message starting with `msg` (its own log lines, not an earlier agent's). */
  logged(msg: string): boolean;
  /** Of the messages starting with one of `prefixes`, the one this process logged last. */
  lastLogged(prefixes: readonly string[]): string | undefined;
  /** How many messages starting with `prefix` this process has logged. */
  countLogged(prefix: string): number;
}

/** What an agent logs when it may take VIPs, and when it may not (any more). */
const MAY_TAKE = ['hold over; may take VIPs', 'instances re-listed after fencing; may take VIPs'];
const MAY_NOT = ['first heartbeat renewal accepted', 'fencing:', 'heartbeat renewals succeed again'];

/**
 * Whether the agent may take VIPs now: past the hold after its renewals (re)started, by its own log
 * (a node elected while its agent holds off takes over only when the hold ends: tests and the bench
 * wait for this before failing the active node, so they measure a failover, not a hold).
 */
export function mayTakeVips(agent: AgentProcess): boolean {
  const last = agent.lastLogged([...MAY_TAKE, ...MAY_NOT]);
  return agent.alive() && last !== undefined && MAY_TAKE.some((m) => last.startsWith(m));
}

export interface AgentsOptions {
  /** The kubeconfig the agents use (its server must be reachable from the node namespaces). */
  kubeconfigPath: string;
  logDir: string;
  /** Extra flags for every agent (e.g. timings). */
  args?: string[];
}

/** Starts and stops the agents of one network; closes their log files at close(). */
export class Agents {
  readonly #net: Network;
  readonly #opts: AgentsOptions;
  readonly #logs: WriteStream[] = [];

  constructor(net: Network, opts: AgentsOptions) {
    this.#net = net;
    this.#opts = opts;
  }

  /** Starts an agent for `node` (named after it) in its namespace. */
  start(node: { name: string; ns: string }, extraArgs: string[] = []): AgentProcess {
    const out = createWriteStream(join(this.#opts.logDir, `agent-${node.name}.log`), { flags: 'a' });
    this.#logs.push(out);
    const child = this.#net.spawnIn(node.ns, process.execPath, [
      BIN, 'agent', '--node-name', node.name, '--kubeconfig', this.#opts.kubeconfigPath, '--heartbeat-namespace', DEFAULT_NAMESPACE,
      '--metrics-addr', '127.0.0.1:9870', ...(this.#opts.args ?? []), ...extraArgs,
    ]);
    child.stdout?.pipe(out, { end: false });
    child.stderr?.pipe(out, { end: false });
    // The messages of this process (pino JSON lines on stderr), for waiting on what it reports.
    const messages: string[] = [];
    let partial = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        try {
          const msg = (JSON.parse(line) as { msg?: unknown }).msg;
          if (typeof msg === 'string') messages.push(msg);
        } catch {
          // not a log line
        }
      }
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    let gone = false;
    void exited.then(() => (gone = true));
    return {
      pid: child.pid!,
      child,
      exited,
      kill: (signal: NodeJS.Signals = 'SIGTERM') => {
        if (!gone) process.kill(child.pid!, signal);
      },
      alive: () => !gone,
      logged: (msg) => messages.some((m) => m.startsWith(msg)),
      lastLogged: (prefixes) => messages.findLast((m) => prefixes.some((p) => m.startsWith(p))),
      countLogged: (prefix) => messages.filter((m) => m.startsWith(prefix)).length,
    };
  }

  /** A node without an agent (yet): not alive, logged nothing. */
  static none(): AgentProcess {
    return {
      pid: 0,
      child: undefined,
      exited: Promise.resolve({ code: null, signal: null }),
      kill: () => undefined,
      alive: () => false,
      logged: () => false,
      lastLogged: () => undefined,
      countLogged: () => 0,
    };
  }

  /** Kills the agent if it is alive (SIGCONT, then SIGKILL: a frozen one goes too) and waits for its exit. */
  static async kill(agent: AgentProcess): Promise<void> {
    if (!agent.alive()) return;
    try {
      agent.kill('SIGCONT');
      agent.kill('SIGKILL');
    } catch {
      // already gone
    }
    await agent.exited;
  }

  close(): void {
    for (const s of this.#logs) s.end();
  }
}
