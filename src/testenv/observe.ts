// Watching the network of the test environment from inside its namespaces: ARP frames on an interface
// (optionally with an active prober), the kernel's neighbour and address changes, and a single UDP
// datagram to make a namespace resolve an address. Each watcher is a child process in the namespace;
// its events carry the wall-clock time (performance.timeOrigin + now, ms) at which it read them, so
// events of several watchers and of the test process share one clock.
//
// Watchers are stopped by their stop(), and at the latest with the network (its teardown kills every
// process it spawned).

import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import type { Network } from './netns.ts';
import { poll, PollTimeout } from './poll.ts';
import { REPO } from './paths.ts';

export interface ArpEvent {
  /** Wall clock, ms (fractional), when the capture process read the frame. */
  t: number;
  ifname: string;
  ethSrc: string;
  ethDst: string;
  op: 'request' | 'reply';
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
  /** sender IP = target IP: an announcement, not a question. */
  gratuitous: boolean;
}

export interface Capture {
  readonly events: ArpEvent[];
  stop(): void;
}

export interface NeighEvent {
  t: number;
  ip: string;
  mac: string | undefined;
  state: string;
  deleted: boolean;
  line: string;
}

export interface NeighMonitor {
  readonly events: NeighEvent[];
  stop(): void;
}

export interface AddrEvent {
  t: number;
  ip: string;
  ifname: string;
  deleted: boolean;
  line: string;
}

export interface AddrMonitor {
  readonly events: AddrEvent[];
  stop(): void;
}

export interface ArpProbe {
  ip: string;
  senderMac: string;
  senderIp: string;
  intervalMs: number;
}

/** Runs `args` in `ns` and hands each stdout line to `onLine`; with `readyLine`, resolves once it is printed. */
function spawnLines(net: Network, ns: string, args: string[], onLine: (line: string, t: number) => void, readyLine?: string): Promise<ChildProcess> {
  const child = net.spawnIn(ns, args[0]!, args.slice(1));
  const rl = createInterface({ input: child.stdout! });
  return new Promise((resolveReady, reject) => {
    let ready = readyLine === undefined;
    if (ready) resolveReady(child);
    rl.on('line', (line) => {
      const t = performance.timeOrigin + performance.now();
      if (!ready && line === readyLine) {
        ready = true;
        resolveReady(child);
        return;
      }
      onLine(line, t);
    });
    child.once('exit', (code) => {
      if (!ready) reject(new Error(`${args.join(' ')} in ${ns} exited (${code}) before it was ready`));
    });
  });
}

/**
 * Records every ARP frame received on `ifname` in `ns`. With `probe`, the same process also broadcasts
 * an ARP request for `probe.ip` every `probe.intervalMs` (an active prober: whoever holds the IP answers);
 * several probes (one capture process for many addresses) each keep their own interval.
 */
export async function captureArp(net: Network, ns: string, ifname: string, probe?: ArpProbe | readonly ArpProbe[],
  /** Where events go instead of `events` (a long capture that routes and forgets them). */
  sink?: (e: ArpEvent) => void): Promise<Capture> {
  const probes = probe === undefined ? [] : Array.isArray(probe) ? probe : [probe as ArpProbe];
  const events: ArpEvent[] = [];
  const packetUrl = pathToFileURL(join(REPO, 'src', 'agent', 'net', 'packet.ts')).href;
  const framesUrl = pathToFileURL(join(REPO, 'src', 'agent', 'net', 'frames.ts')).href;
  // A tiny capture process inside the namespace: one JSON line per ARP frame received on `ifname`.
  const script = `
    import { PacketSocket, ETH_P_ARP } from ${JSON.stringify(packetUrl)};
    import { decodeFrame, arpRequestFrame } from ${JSON.stringify(framesUrl)};
    const ifname = process.argv[1];
    const probes = process.argv[2] ? JSON.parse(process.argv[2]) : [];
    const s = PacketSocket.open(ifname, ETH_P_ARP);
    for (const probe of probes) {
      const frame = arpRequestFrame({ senderMac: probe.senderMac, senderIp: probe.senderIp, targetIp: probe.ip });
      setInterval(() => { try { s.send(frame); } catch {} }, probe.intervalMs);
    }
    s.on('frame', (f) => {
      const t = performance.timeOrigin + performance.now();
      const d = decodeFrame(f);
      if (!d || d.kind !== 'arp') return;
      process.stdout.write(JSON.stringify({ t, ifname, ethSrc: d.eth.src, ethDst: d.eth.dst, op: d.arp.op === 1 ? 'request' : 'reply',
        senderMac: d.arp.senderMac, senderIp: d.arp.senderIp, targetMac: d.arp.targetMac, targetIp: d.arp.targetIp,
        gratuitous: d.arp.senderIp === d.arp.targetIp }) + '\\n');
    });
    process.stdout.write('ready\\n');
  `;
  const child = await spawnLines(net, ns, [process.execPath, '--input-type=module', '-e', script, ifname, ...(probes.length > 0 ? [JSON.stringify(probes)] : [])], (line) => {
    try {
      const e = JSON.parse(line) as ArpEvent;
      if (sink) sink(e);
      else events.push(e);
    } catch {
      // not ours
    }
  }, 'ready');
  return { events, stop: () => void child.kill('SIGKILL') };
}

/** One UDP datagram from `ns` to `ip` (makes the kernel resolve `ip`, like a ping; no ping binary needed). */
export async function udpPoke(net: Network, ns: string, ip: string): Promise<void> {
  const script = `import { createSocket } from 'node:dgram';
    const s = createSocket(${JSON.stringify(ip.includes(':') ? 'udp6' : 'udp4')});
    s.send('egressgw-lab', 9, process.argv[1], () => s.close());`;
  await net.exec(ns, process.execPath, ['--input-type=module', '-e', script, ip]);
}

/** The kernel's neighbour table changes in `ns` (`ip monitor neigh`). */
export async function monitorNeighbours(net: Network, ns: string): Promise<NeighMonitor> {
  const events: NeighEvent[] = [];
  const marker = armMarker(net, ns);
  // Subscribed to addresses too, only for the marker: one netlink socket joins both groups at start, so
  // once the marker's address event arrives the neighbour events are being delivered as well.
  const child = await spawnLines(net, ns, ['ip', 'monitor', 'neigh', 'address'], (line, t) => {
    if (marker.saw(line)) return;
    const m = /^(Deleted )?(\S+) dev \S+(?: lladdr (\S+))?(?: router)?(?: proxy)? ?([A-Z_ ]*)$/.exec(line.trim());
    if (!m) return;
    events.push({ t, ip: m[2]!, mac: m[3]?.toLowerCase(), state: (m[4] ?? '').trim(), deleted: Boolean(m[1]), line });
  });
  await marker.armed(child);
  return { events, stop: () => void child.kill('SIGKILL') };
}

/**
 * `ip monitor` prints nothing when it starts listening, so a watcher that returned at spawn could miss
 * the first change (a failover test then missed "address removed"). The marker proves the subscription:
 * a loopback address of its own (127.254.x.y/32 on `lo`, unique per watcher) is added until the watcher
 * reports it, then removed and the removal awaited; the marker's lines never reach the events.
 */
function armMarker(net: Network, ns: string) {
  const ip = `127.254.${1 + Math.floor(Math.random() * 254)}.${1 + Math.floor(Math.random() * 254)}`;
  const seen = { added: false, deleted: false };
  const QUICK = { intervalMs: 10 };
  return {
    saw(line: string): boolean {
      if (!line.includes(` inet ${ip}/32 `)) return false;
      if (line.startsWith('Deleted')) seen.deleted = true;
      else seen.added = true;
      return true;
    },
    async armed(child: ChildProcess): Promise<void> {
      const deadline = Date.now() + 10_000;
      while (!seen.added) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`ip monitor in ${ns} did not report its marker ${ip}`);
        await net.ip(ns, ['address', 'replace', `${ip}/32`, 'dev', 'lo']);
        const reported = await poll(`marker ${ip} reported`, () => seen.added, 250, QUICK).catch((e: unknown) => {
          if (e instanceof PollTimeout) return false;
          throw e;
        });
        if (reported) break;
        // Added before the watcher listened: remove it so that the next add is a new event.
        await net.ip(ns, ['address', 'del', `${ip}/32`, 'dev', 'lo']).catch(() => {});
      }
      await net.ip(ns, ['address', 'del', `${ip}/32`, 'dev', 'lo']);
      await poll(`ip monitor in ${ns} to report its marker ${ip} removed`, () => seen.deleted, 10_000, QUICK);
    },
  };
}

/** Addresses added to and removed from interfaces in `ns` (`ip monitor address`). */
export async function monitorAddresses(net: Network, ns: string): Promise<AddrMonitor> {
  const events: AddrEvent[] = [];
  const marker = armMarker(net, ns);
  const child = await spawnLines(net, ns, ['ip', '-o', 'monitor', 'address'], (line, t) => {
    if (marker.saw(line)) return;
    const m = /^(Deleted )?\d+:\s+(\S+)\s+inet6?\s+([0-9a-f.:]+)\//.exec(line.trim());
    if (!m) return;
    events.push({ t, ifname: m[2]!, ip: m[3]!, deleted: Boolean(m[1]), line });
  });
  await marker.armed(child);
  return { events, stop: () => void child.kill('SIGKILL') };
}

const MAC = '[0-9a-f]{2}(?::[0-9a-f]{2}){5}';
const IP4 = '\\d+\\.\\d+\\.\\d+\\.\\d+';
const TCPDUMP_ARP = new RegExp(`^(\\d+\\.\\d+) (${MAC}) > (${MAC}), ethertype ARP \\(0x0806\\), length \\d+: (?:Request who-has (${IP4}) tell (${IP4})|Reply (${IP4}) is-at (${MAC}))`);

/**
 * One line of `tcpdump -e -n -tt -l arp` as an ArpEvent (undefined for anything else). tcpdump does not
 * print a reply's target address: `targetIpOf` names it by the frame's destination MAC (a capturing
 * host knows its own); a broadcast reply is an announcement (target = sender).
 */
export function parseTcpdumpArp(line: string, ifname: string, targetIpOf: (mac: string) => string | undefined): ArpEvent | undefined {
  const m = TCPDUMP_ARP.exec(line);
  if (!m) return undefined;
  const [, ts, ethSrc, ethDst, whoHas, tell, replyIp, isAt] = m as unknown as string[];
  const [sec, usec] = ts!.split('.') as [string, string];
  const t = Number(sec) * 1000 + Number(usec) / 1000;
  if (whoHas !== undefined) {
    return { t, ifname, ethSrc: ethSrc!, ethDst: ethDst!, op: 'request', senderMac: ethSrc!, senderIp: tell!, targetMac: '00:00:00:00:00:00', targetIp: whoHas, gratuitous: whoHas === tell };
  }
  const broadcast = ethDst === 'ff:ff:ff:ff:ff:ff';
  const targetIp = broadcast ? replyIp! : targetIpOf(ethDst!) ?? '';
  return { t, ifname, ethSrc: ethSrc!, ethDst: ethDst!, op: 'reply', senderMac: isAt!, senderIp: replyIp!, targetMac: ethDst!, targetIp, gratuitous: targetIp === replyIp };
}

/**
 * ARP frames on `ifname` in `ns` stamped by the kernel when they arrived (tcpdump), not when a process
 * got to read them: on a starved machine a reader's clock runs up to a second late, which would make an
 * answer look later than it was. For checks that hold answers to a deadline. Needs `tcpdump`.
 */
export async function captureArpKernelTime(net: Network, ns: string, ifname: string, targetIpOf: (mac: string) => string | undefined, sink: (e: ArpEvent) => void): Promise<Capture> {
  const child = net.spawnIn(ns, 'tcpdump', ['-i', ifname, '-e', '-n', '-tt', '-l', '--immediate-mode', 'arp']);
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const e = parseTcpdumpArp(line, ifname, targetIpOf);
    if (e) sink(e);
  });
  // tcpdump says "listening on …" on stderr once its socket is bound.
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/listening on/.test(err)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`tcpdump in ${ns} exited (${code}) before it listened: ${err.trim()}`)));
  });
  return { events: [], stop: () => void child.kill('SIGKILL') };
}
