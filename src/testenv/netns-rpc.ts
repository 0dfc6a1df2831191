// Calls the exported functions of a module inside a network namespace. Node cannot setns(2), so the
// module runs in a child (`ip netns exec NS node netns-rpc-child.ts MODULE`) that answers one JSON line
// per call. For tests of code that must act on a namespace's own kernel state (nftables, addresses)
// rather than through `ip -n`: the fence, for one, talks to nftables with libnftables in process.
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Network } from './netns.ts';

const CHILD = fileURLToPath(new URL('./netns-rpc-child.ts', import.meta.url));

export class NetnsRpc {
  readonly ns: string;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #seq = 0;
  #stderr = '';

  private constructor(ns: string, child: ChildProcess) {
    this.ns = ns;
    this.#child = child;
  }

  /** Starts `modulePath` (absolute path or file URL) in `ns` and waits until it is imported. */
  static async start(net: Network, ns: string, modulePath: string): Promise<NetnsRpc> {
    const child = net.spawnIn(ns, process.execPath, [CHILD, modulePath.startsWith('file:') ? fileURLToPath(modulePath) : modulePath]);
    const rpc = new NetnsRpc(ns, child);
    child.stderr!.on('data', (d: Buffer) => (rpc.#stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code, signal) => {
        const err = new Error(`netns rpc child in ${ns} exited (${code ?? signal}): ${rpc.#stderr.trim()}`);
        reject(err);
        for (const p of rpc.#pending.values()) p.reject(err);
        rpc.#pending.clear();
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = JSON.parse(line) as { ready?: true; seq?: number; value?: unknown; error?: string; code?: string };
        if (m.ready) return resolve();
        const p = rpc.#pending.get(m.seq!);
        rpc.#pending.delete(m.seq!);
        if (m.error === undefined) p?.resolve(m.value);
        else p?.reject(Object.assign(new Error(`${ns}: ${m.error}`), { code: m.code }));
      });
    });
    return rpc;
  }

  /** Calls the module's export `fn` with JSON-serialisable arguments; resolves with its (awaited) result. */
  call<T = unknown>(fn: string, ...args: unknown[]): Promise<T> {
    const seq = ++this.#seq;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.#child.stdin!.write(`${JSON.stringify({ seq, fn, args })}\n`);
    });
  }

  /** The child's process id (to freeze it with SIGSTOP, for one). */
  get pid(): number {
    return this.#child.pid!;
  }

  /** Ends the child: closing stdin makes it exit; killed if it does not. */
  close(): Promise<void> {
    return endByStdin(this.#child);
  }
}

/**
 * Ends a helper child that exits when its stdin closes (netns-rpc-child.ts, wire-helper.ts); kills it
 * if it has not exited 3 s later.
 */
export async function endByStdin(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdin!.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
