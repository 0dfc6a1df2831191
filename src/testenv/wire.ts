// Parent side of wire-helper.ts: packet capture, raw sends and an announcer running inside a
// namespace (await their effects with poll.ts).
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Network } from './netns.ts';
import { endByStdin } from './netns-rpc.ts';

const HELPER = fileURLToPath(new URL('./wire-helper.ts', import.meta.url));

export interface CapturedFrame {
  sock: string;
  frame: Buffer;
}

export interface CounterEvent {
  name: 'announcementSent' | 'requestReceived' | 'responseSent';
  ip: string;
  ifname: string;
}

export class WireHelper {
  readonly ns: string;
  readonly frames: CapturedFrame[] = [];
  readonly counters: CounterEvent[] = [];
  readonly errors: string[] = [];
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  #seq = 0;
  #stderr = '';

  private constructor(ns: string, child: ChildProcess) {
    this.ns = ns;
    this.#child = child;
  }

  /** Starts the helper in `ns` (with the Node binary running us) and waits until it is ready. */
  static async start(net: Network, ns: string): Promise<WireHelper> {
    const child = net.spawnIn(ns, process.execPath, [HELPER]);
    const h = new WireHelper(ns, child);
    child.stderr!.on('data', (d: Buffer) => (h.#stderr += d.toString()));
    const ready = new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => {
        const err = new Error(`wire helper in ${ns} exited with ${code}: ${h.#stderr.trim()}`);
        reject(err);
        for (const p of h.#pending.values()) p.reject(err);
        h.#pending.clear();
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = JSON.parse(line) as { ev: string; seq?: number; sock?: string; hex?: string; message?: string; code?: string; name?: CounterEvent['name']; ip?: string; ifname?: string; context?: string };
        if (m.ev === 'ready') resolve();
        else if (m.ev === 'frame') h.frames.push({ sock: m.sock!, frame: Buffer.from(m.hex!, 'hex') });
        else if (m.ev === 'counter') h.counters.push({ name: m.name!, ip: m.ip!, ifname: m.ifname! });
        else if (m.ev === 'announcerError') h.errors.push(`${m.context}: ${m.message}`);
        else if (m.ev === 'ok' || m.ev === 'error') {
          const p = h.#pending.get(m.seq!);
          h.#pending.delete(m.seq!);
          if (m.ev === 'ok') p?.resolve();
          else p?.reject(Object.assign(new Error(`${ns}: ${m.message}`), { code: m.code }));
        }
      });
    });
    await ready;
    return h;
  }

  command(cmd: string, args: Record<string, unknown> = {}): Promise<void> {
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#pending.set(seq, { resolve, reject });
      this.#child.stdin!.write(`${JSON.stringify({ ...args, seq, cmd })}\n`);
    });
  }

  /** Opens a packet socket named `sock` on `iface`; received frames accumulate in `frames`. */
  capture(sock: string, iface: string, protocol: 'arp' | 'ipv6' | 'all'): Promise<void> {
    return this.command('capture', { sock, iface, protocol });
  }

  send(sock: string, frame: Buffer): Promise<void> {
    return this.command('send', { sock, hex: frame.toString('hex') });
  }

  framesOf(sock: string): Buffer[] {
    return this.frames.filter((f) => f.sock === sock).map((f) => f.frame);
  }

  /** Ends the helper: closing stdin makes it release its sockets and exit; killed if it does not. */
  close(): Promise<void> {
    return endByStdin(this.#child);
  }
}
