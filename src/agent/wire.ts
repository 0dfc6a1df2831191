// Adapts the layer-2 Announcer (announcer.ts) to what the agent needs: one advertisement per VIP on the
// interface the agent chose, the interface set kept current, counters into the agent's metrics, and a
// frame self-check for /readyz.

import { Announcer } from './announcer.ts';
import type { AddressManager } from './net/iproute.ts';
import { canSendFrames } from './net/packet.ts';
import { ipFamily } from './net/frames.ts';
import { errFields, type Logger } from '../kube/log.ts';
import type { AgentMetrics } from './metrics.ts';
import type { VipAnnouncer } from './agent.ts';

/** The advertisement name the agent uses: it keys VIPs by IP, so one name is enough (R28 ref-counting unused). */
const AD_NAME = 'egressgw-agent';
/** A self-check opens and closes a raw socket; once every few seconds is plenty for probes. */
const SELF_CHECK_TTL_MS = 2000;

export class WireAnnouncer implements VipAnnouncer {
  readonly announcer: Announcer;
  readonly #log: Logger;
  #check: { at: number; result: { ok: boolean; reason?: string } } | undefined;

  /** `mayAnswer`: asked before every frame for a VIP goes out (the agent's kernel-switch deadline). */
  constructor(o: { addresses: AddressManager; reannounceIntervalMs: number; metrics: AgentMetrics; log: Logger; mayAnswer?: (ip: string) => boolean }) {
    this.#log = o.log;
    this.announcer = new Announcer({
      addressManager: o.addresses,
      reannounceIntervalMs: o.reannounceIntervalMs,
      // Interfaces are also rescanned on demand when a VIP goes on one the announcer does not serve yet.
      rescanIntervalMs: 5000,
      ...(o.mayAnswer ? { mayAnswer: o.mayAnswer } : {}),
      hooks: {
        announcementSent: (ip) => o.metrics.announcementsSent.inc({ family: ipFamily(ip) === 4 ? 'ipv4' : 'ipv6' }),
        requestReceived: () => o.metrics.requestsReceived.inc(),
        responseSent: () => o.metrics.responsesSent.inc(),
        error: (err, context) => o.log.warn({ ...errFields(err), context }, 'announcer error'),
      },
    });
  }

  async start(): Promise<void> {
    await this.announcer.start();
  }

  async advertise(ip: string, ifname: string): Promise<void> {
    // The burst starts inside advertise(), so the interface's socket must be open first.
    if (!this.announcer.interfaces().includes(ifname)) await this.announcer.rescan();
    if (!this.announcer.interfaces().includes(ifname)) {
      this.#log.warn({ vip: ip, ifname }, 'announcer does not serve this interface (not eligible?); the kernel still answers ARP');
    }
    this.announcer.withdraw(AD_NAME, ip); // a moved VIP must burst again on its new interface
    this.announcer.advertise({ name: AD_NAME, ip, interfaces: [ifname] });
  }

  withdraw(ip: string): void {
    this.announcer.withdraw(AD_NAME, ip);
  }

  selfCheck(): { ok: boolean; reason?: string } {
    const now = performance.now();
    if (this.#check && now - this.#check.at < SELF_CHECK_TTL_MS) return this.#check.result;
    const iface = this.announcer.interfaces()[0] ?? 'lo';
    const r = canSendFrames(iface);
    const result = r.ok ? { ok: true } : { ok: false, reason: r.reason };
    this.#check = { at: now, result };
    return result;
  }

  close(): void {
    this.announcer.stop();
  }
}
