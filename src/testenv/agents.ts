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
  readonly child: ChildProcess;
  /** Resolves with the exit code / signal once the process is gone. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): void;
  alive(): boolean;
  /** Resolves once the agent has logged that it started (its signal handlers are in place by then). */
  readonly started: Promise<void>;
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
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    // The agent logs (JSON, pino) on stderr.
    const started = new Promise<void>((resolve, reject) => {
      let seen = '';
      const onData = (d: Buffer) => {
        seen = (seen + d.toString()).slice(-4096);
        if (seen.includes('"msg":"agent started"')) {
          child.stderr?.off('data', onData);
          resolve();
        }
      };
      child.stderr?.on('data', onData);
      void exited.then(({ code, signal }) => reject(new Error(`agent ${node.name} exited (${signal ?? code}) before it started`)));
    });
    started.catch(() => undefined);
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
      started,
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
