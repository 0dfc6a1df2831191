// Parent side of traffic-helper.ts: real UDP/TCP traffic sent and received inside a namespace, recorded
// as events (who the receiver saw as the source, when). Await effects with poll().
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { HelperProcess } from './helper-process.ts';
import { poll } from './poll.ts';

const HELPER = fileURLToPath(new URL('./traffic-helper.ts', import.meta.url));

export interface UdpEvent {
  ev: 'udp';
  id: string;
  from: string;
  fromPort: number;
  data: string;
  /** Wall clock, ms, when the helper read it. */
  t: number;
}

export interface TcpEvent {
  ev: 'accept' | 'connected' | 'echo' | 'closed' | 'recv';
  id: string;
  t: number;
  from?: string;
  fromPort?: number;
  localPort?: number;
  n?: number;
  echoed?: number;
  error?: string;
  /** recv: a line the server read; echo (manual connections): the line echoed back. */
  data?: string;
  /** closed: by our own stop command (not by the network or the peer). */
  stopped?: boolean;
}

/** Starts a process inside a namespace (the test environment's spawnIn). */
export type SpawnIn = (ns: string, cmd: string, args: string[]) => ChildProcess;

export class Traffic {
  readonly udp: UdpEvent[] = [];
  readonly tcp: TcpEvent[] = [];
  #process!: HelperProcess;

  get ns(): string {
    return this.#process.ns;
  }

  static async start(spawnIn: SpawnIn, ns: string): Promise<Traffic> {
    const h = new Traffic();
    h.#process = await HelperProcess.start(ns, spawnIn(ns, process.execPath, [HELPER]), 'traffic helper', (m) => {
      if (m.ev === 'udp') h.udp.push(m as unknown as UdpEvent);
      else h.tcp.push(m as unknown as TcpEvent);
    });
    return h;
  }

  command(cmd: string, args: Record<string, unknown> = {}): Promise<void> {
    return this.#process.command(cmd, args);
  }

  udpListen(id: string, port: number): Promise<void> {
    return this.command('udpListen', { id, port });
  }

  udpSend(host: string, port: number, data: string): Promise<void> {
    return this.command('udpSend', { host, port, data });
  }

  udpStream(id: string, host: string, port: number, intervalMs: number): Promise<void> {
    return this.command('udpStream', { id, host, port, intervalMs });
  }

  /** record: also an event per line read (`recv`) and per connection ended (`closed`, with its port). */
  tcpListen(id: string, port: number, opts: { record?: boolean } = {}): Promise<void> {
    return this.command('tcpListen', { id, port, record: opts.record === true });
  }

  /** intervalMs 0: no lines of its own (send them with tcpSend), every echo an event. */
  tcpConnect(id: string, host: string, port: number, intervalMs = 50, opts: { localPort?: number } = {}): Promise<void> {
    return this.command('tcpConnect', { id, host, port, intervalMs, ...opts });
  }

  /** One line on connection `id` (opened with tcpConnect). */
  tcpSend(id: string, data: string): Promise<void> {
    return this.command('tcpSend', { id, data });
  }

  /**
   * The server side of connection `fromPort` accepted by listener `id`: `send` a line of its own, `end`
   * (half-close: FIN; it goes on reading and recording, no longer echoes), `reset` (RST), or `keepalive`
   * (TCP keepalive after 1 s idle: its probes are bare ACKs).
   */
  tcpPeer(id: string, fromPort: number, action: 'send' | 'end' | 'reset' | 'keepalive', data?: string): Promise<void> {
    return this.command('tcpPeer', { id, fromPort, action, ...(data === undefined ? {} : { data }) });
  }

  stop(id: string): Promise<void> {
    return this.command('stop', { id });
  }

  /** Datagrams received by listener `id` whose payload starts with `prefix`. */
  received(id: string, prefix = ''): UdpEvent[] {
    return this.udp.filter((e) => e.id === id && e.data.startsWith(prefix));
  }

  close(): Promise<void> {
    return this.#process.close();
  }
}

let nextPort = 20_000;
/** A fresh UDP/TCP port for one check (helpers live for a whole test file). */
export function freshPort(): number {
  return nextPort++;
}

/**
 * The source addresses `sink` sees for a fresh datagram stream from `from` to `dst` (waits for `n`
 * datagrams). What the "internet" observes: the VIP, an interface's IP, or a node's IP.
 */
export async function sourcesSeen(sink: Traffic, from: Traffic, dst: string, n = 3, timeoutMs = 15_000): Promise<string[]> {
  const port = freshPort();
  const id = `s${port}`;
  await sink.udpListen(id, port);
  await from.udpStream(id, dst, port, 20);
  try {
    const got = await poll(`${n} datagrams from ${from.ns} at ${dst}`, () => sink.received(id).length >= n && sink.received(id), timeoutMs);
    return [...new Set(got.map((e) => e.from))];
  } finally {
    await from.stop(id);
    await sink.stop(id);
  }
}

/**
 * How many datagrams of a stream from `from` reach `dst` while a control stream from `control` (same
 * destination, same start) delivers 20: the "never" of a negative check, bounded by traffic that does
 * arrive. 0 means blocked.
 */
export async function deliveredBesideControl(sink: Traffic, from: Traffic, control: Traffic, dst: string): Promise<number> {
  const port = freshPort();
  const id = `b${port}`;
  await sink.udpListen(id, port);
  await from.udpStream(`${id}a`, dst, port, 10);
  await control.udpStream(`${id}c`, dst, port, 10);
  try {
    await poll('the control stream', () => sink.received(id, `${id}c:`).length >= 20, 15_000);
    return sink.received(id, `${id}a:`).length;
  } finally {
    await from.stop(`${id}a`);
    await control.stop(`${id}c`);
    await sink.stop(id);
  }
}
