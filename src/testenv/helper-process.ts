// The protocol of the helper processes that do I/O inside a network namespace for a test (Node cannot
// setns(2), so a helper runs under `ip netns exec NS node helper.ts`): one JSON command per stdin line,
// answered by {"ev":"ok","seq":N} or {"ev":"error","seq":N,"message":…}; other JSON lines on stdout are
// events. `serveCommands` is the child's side, `HelperProcess` the parent's (wire.ts, traffic.ts).
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { endByStdin } from './netns-rpc.ts';

export type Command = { seq: number; cmd: string; [k: string]: unknown };

export function emit(msg: object): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
}

/** Child side: runs `handle` for every command line; `onClose` when the parent closes stdin (then exits). */
export function serveCommands(handle: (c: Command) => Promise<void>, onClose: () => void = () => undefined): void {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    let c: Command;
    try {
      c = JSON.parse(line) as Command;
    } catch {
      emit({ ev: 'error', seq: -1, message: `bad JSON: ${line}` });
      return;
    }
    handle(c).then(
      () => emit({ ev: 'ok', seq: c.seq }),
      (err: unknown) => emit({ ev: 'error', seq: c.seq, message: err instanceof Error ? err.message : String(err), code: (err as { code?: unknown }).code }),
    );
  });
  // The parent closing stdin means "done": release what is held so the process exits.
  rl.on('close', () => {
    onClose();
    process.exit(0);
  });
  emit({ ev: 'ready' });
}

/** Parent side: the running helper, its commands and its events. */
export class HelperProcess {
  readonly ns: string;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #seq = 0;
  #stderr = '';

  private constructor(ns: string, child: ChildProcess) {
    this.ns = ns;
    this.#child = child;
  }

  /** Starts `child` (already spawned in `ns`), hands every event line to `onEvent`, waits for "ready". */
  static async start(ns: string, child: ChildProcess, what: string, onEvent: (m: Record<string, unknown>) => void): Promise<HelperProcess> {
    const h = new HelperProcess(ns, child);
    child.stderr!.on('data', (d: Buffer) => (h.#stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => {
        const err = new Error(`${what} in ${ns} exited with ${code}: ${h.#stderr.trim()}`);
        reject(err);
        for (const p of h.#pending.values()) p.reject(err);
        h.#pending.clear();
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = JSON.parse(line) as Record<string, unknown> & { ev: string; seq?: number; message?: string; code?: string };
        if (m.ev === 'ready') resolve();
        else if (m.ev === 'ok' || m.ev === 'error') {
          const p = h.#pending.get(m.seq!);
          h.#pending.delete(m.seq!);
          if (m.ev === 'ok') p?.resolve();
          else p?.reject(Object.assign(new Error(`${ns}: ${m.message}`), { code: m.code }));
        } else onEvent(m);
      });
    });
    return h;
  }

  command(cmd: string, args: Record<string, unknown> = {}): Promise<void> {
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      this.#child.stdin!.write(`${JSON.stringify({ ...args, seq, cmd })}\n`);
    });
  }

  /** Ends the helper: closing stdin makes it release its sockets and exit; killed if it does not. */
  close(): Promise<void> {
    return endByStdin(this.#child);
  }
}
