// Parent side of wire-helper.ts: packet capture, raw sends and an announcer running inside a
// namespace (await their effects with poll.ts).
import { fileURLToPath } from 'node:url';
import { HelperProcess } from './helper-process.ts';
import type { Network } from './netns.ts';

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
  readonly frames: CapturedFrame[] = [];
  readonly counters: CounterEvent[] = [];
  readonly errors: string[] = [];
  #process!: HelperProcess;

  get ns(): string {
    return this.#process.ns;
  }

  /** Starts the helper in `ns` (with the Node binary running us) and waits until it is ready. */
  static async start(net: Network, ns: string): Promise<WireHelper> {
    const h = new WireHelper();
    h.#process = await HelperProcess.start(ns, net.spawnIn(ns, process.execPath, [HELPER]), 'wire helper', (m) => {
      if (m.ev === 'frame') h.frames.push({ sock: String(m.sock), frame: Buffer.from(String(m.hex), 'hex') });
      else if (m.ev === 'counter') h.counters.push({ name: m.name as CounterEvent['name'], ip: String(m.ip), ifname: String(m.ifname) });
      else if (m.ev === 'announcerError') h.errors.push(`${String(m.context)}: ${String(m.message)}`);
    });
    return h;
  }

  command(cmd: string, args: Record<string, unknown> = {}): Promise<void> {
    return this.#process.command(cmd, args);
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
    return this.#process.close();
  }
}
