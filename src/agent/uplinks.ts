// Uplink health for the heartbeat (design §3): the operational state and addresses of the interfaces
// gateways may use, kept current from kernel notifications.
//
// Why a watcher rather than a read before each renewal: with renewals every 200 ms, reading links and
// addresses through `ip` each time would fork a few processes per renewal and put their latency
// between "decide to renew" and the renewal's send time (the fence deadline counts from the send). A
// long-lived `ip -o monitor link address` says when something changed; only then are the links read
// again, and a change asks for a renewal at once, so a pulled cable reaches the controller in one
// round trip. A full read every RESCAN_MS covers a missed notification or a monitor that died.

import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import type { Logger } from '../kube/log.ts';
import { errFields } from '../kube/log.ts';
import type { Uplinks } from './heartbeat.ts';
import { uplinksJson } from './heartbeat.ts';
import type { AddressManager, Link } from './net/iproute.ts';
import { EXCLUDED_INTERFACE_RE } from './net/iproute.ts';

const RESCAN_MS = 5000;
/** Notifications come in bursts (link down takes its addresses and routes along): read once per burst. */
const DEBOUNCE_MS = 10;
const MONITOR_RESTART_MS = 1000;

/** Administratively up and with carrier (UNKNOWN is what loopback-like and some virtual links report). */
export function isLinkUp(link: Link): boolean {
  return link.flags.includes('UP') && (link.operstate === 'UP' || link.operstate === 'UNKNOWN') && !link.flags.includes('NO-CARRIER');
}

/** Whether an `ip -o monitor address` line is about one of `ips` (the agent's own VIP refreshes). */
export function isAboutAddresses(line: string, ips: ReadonlySet<string>): boolean {
  const m = /\binet6?\s+([0-9a-fA-F.:]+)\//.exec(line);
  return m !== null && ips.has(m[1]!.toLowerCase());
}

interface UplinkEvents {
  /** The published state changed (or a link holding a VIP went down). */
  changed: [];
}

export interface UplinkWatcherOptions {
  addresses: AddressManager;
  /** The VIPs the agent holds: they are not uplink addresses, and their refreshes are not changes. */
  vips: () => ReadonlySet<string>;
  log: Logger;
}

export class UplinkWatcher extends EventEmitter<UplinkEvents> {
  readonly #o: UplinkWatcherOptions;
  #current: Uplinks | undefined;
  #json: string | undefined;
  #links: Link[] = [];
  #monitor: ChildProcess | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #rescan: NodeJS.Timeout | undefined;
  #restart: NodeJS.Timeout | undefined;
  #reading: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(o: UplinkWatcherOptions) {
    super();
    this.#o = o;
  }

  /** Reads the state once, then follows the kernel's notifications. */
  async start(): Promise<void> {
    this.#startMonitor();
    await this.read();
    this.#rescan = setInterval(() => void this.read(), RESCAN_MS);
    this.#rescan.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#debounce);
    clearInterval(this.#rescan);
    clearTimeout(this.#restart);
    this.#monitor?.kill();
    this.#monitor = undefined;
  }

  /** The last state read (undefined before the first read succeeded). */
  current(): Uplinks | undefined {
    return this.#current;
  }

  /** Links as of the last read. */
  get links(): readonly Link[] {
    return this.#links;
  }

  /** Reads links and addresses now (one read at a time; a request during a read runs one more after it). */
  read(): Promise<void> {
    if (this.#reading) {
      this.#again = true;
      return this.#reading;
    }
    this.#reading = (async () => {
      do {
        this.#again = false;
        try {
          await this.#readOnce();
        } catch (err) {
          this.#o.log.warn(errFields(err), 'reading uplink state failed');
        }
      } while (this.#again && !this.#stopped);
    })().finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  async #readOnce(): Promise<void> {
    const am = this.#o.addresses;
    const links = await am.listLinks();
    this.#links = links;
    const vips = this.#o.vips();
    const out: Uplinks = {};
    for (const link of links) {
      if (EXCLUDED_INTERFACE_RE.test(link.name) || link.master !== undefined) continue;
      if (!link.flags.includes('BROADCAST') || link.flags.includes('NOARP')) continue;
      let addrs: Awaited<ReturnType<AddressManager['addresses']>>;
      try {
        addrs = await am.addresses(link.name);
      } catch {
        continue; // vanished between the two commands
      }
      out[link.name] = {
        up: isLinkUp(link),
        ipv4: addrs.filter((a) => a.family === 4 && !vips.has(a.ip)).map((a) => a.ip),
        ipv6: addrs.filter((a) => a.family === 6 && a.scope === 'global' && !vips.has(a.ip)).map((a) => a.ip),
      };
    }
    const json = uplinksJson(out);
    const changed = json !== this.#json;
    this.#current = out;
    this.#json = json;
    if (changed) this.emit('changed');
  }

  #startMonitor(): void {
    const spawn = this.#o.addresses.monitor?.bind(this.#o.addresses);
    if (this.#stopped || spawn === undefined) return;
    let child: ChildProcess;
    try {
      child = spawn(['link', 'address']);
    } catch (err) {
      this.#o.log.warn(errFields(err), 'cannot follow link changes; reading them every few seconds only');
      return;
    }
    this.#monitor = child;
    child.on('error', (err) => this.#o.log.warn(errFields(err), 'ip monitor failed'));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (isAboutAddresses(line, this.#o.vips())) return;
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => void this.read(), DEBOUNCE_MS);
    });
    child.once('exit', (code, signal) => {
      if (this.#monitor !== child || this.#stopped) return;
      this.#monitor = undefined;
      this.#o.log.warn({ code, signal }, 'ip monitor exited; restarting it');
      this.#restart = setTimeout(() => {
        this.#startMonitor();
        void this.read();
      }, MONITOR_RESTART_MS);
    });
  }
}
