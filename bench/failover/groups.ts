// The failover groups the bench compares, side by side on one LAN (bench/failover.ts): each group is a
// few hosts sharing one VIP, and knows how to settle, fail and recover its owner for each failure kind.
//   egressgw   our controller + agents (defaults, or tuned for speed), on gateway nodes of the test env;
//   reference  the reference path: agents without heartbeat, failover only when the node is marked
//              NotReady, which the bench does after the node-monitor grace period (40 s) for kill -9,
//              SIGSTOP and API cut (a dead, frozen or partitioned node's kubelet stops posting status);
//              uplink down leaves the node Ready, as nothing in the reference looks at uplinks;
//   keepalived VRRP between LAN hosts with 1 s or 100 ms adverts (keepalived.ts).
// A group's frames come from the shared observer capture (routed by VIP, see `frames`).

import { DEFAULT_NAMESPACE, heartbeatLeaseName } from '../../src/api/names.ts';
import type { EgressGateway } from '../../src/api/types.ts';
import { GATEWAYS, leases } from '../../src/kube/resources.ts';
import { microTime } from '../../src/kube/time.ts';
import { mayTakeVips } from '../../src/testenv/agents.ts';
import type { TestEnv, TestEnvNode } from '../../src/testenv/env.ts';
import { lanDown, lanUp, settledActive } from '../../src/testenv/failover.ts';
import type { ArpEvent } from '../../src/testenv/observe.ts';
import { poll } from '../../src/testenv/poll.ts';
import type { Keepalived } from './keepalived.ts';

export type FailureKind = 'kill' | 'stop' | 'cut' | 'uplink';
export const FAILURE_KINDS: readonly FailureKind[] = ['kill', 'stop', 'cut', 'uplink'];
export const KIND_LABEL: Record<FailureKind, string> = { kill: 'kill -9', stop: 'SIGSTOP', cut: 'API cut (LAN up)', uplink: 'uplink down' };

export interface Member {
  name: string;
  mac: string;
}

export interface FailoverGroup {
  /** Result row this group belongs to. */
  row: string;
  name: string;
  vip: string;
  members: readonly Member[];
  /** Failure kinds that apply to this row. */
  kinds: readonly FailureKind[];
  /** Frames for this group's VIP since the last clear (filled by the observer's router). */
  frames: ArpEvent[];
  /** The owner, once exactly one member holds the VIP and every member is ready to take over. */
  settle(deadlineMs: number): Promise<Member>;
  fail(owner: Member, kind: FailureKind): Promise<void>;
  /** How long to wait for another member to answer before calling the failover not detected. */
  answerDeadlineMs(kind: FailureKind): number;
  recover(owner: Member, kind: FailureKind): Promise<void>;
  /** Stops anything the group started (timers). */
  close(): void;
}

/** Member answers the VIP: its MAC. */
function member(n: { name: string; mac: string }): Member {
  return { name: n.name, mac: n.mac };
}

const readyNodes = async (env: TestEnv, gateway: string): Promise<number> =>
  (await env.client.get<EgressGateway>(GATEWAYS, gateway)).status?.readyNodes ?? 0;

/**
 * Gateway nodes of the test environment with our controller: the failures and recoveries both node
 * rows share (the agent killed, frozen, cut from the API, or the LAN link down, and undone).
 */
abstract class NodeGroup {
  readonly name: string;
  readonly vip: string;
  readonly kinds = FAILURE_KINDS;
  readonly frames: ArpEvent[] = [];
  protected readonly env: TestEnv;
  protected readonly nodes: TestEnvNode[];

  constructor(env: TestEnv, name: string, vip: string, nodes: TestEnvNode[]) {
    this.env = env;
    this.name = name;
    this.vip = vip;
    this.nodes = nodes;
  }

  get members(): Member[] {
    return this.nodes.map(member);
  }

  protected node(m: Member): TestEnvNode {
    return this.nodes.find((n) => n.name === m.name)!;
  }

  /** Settled, and `ready()` holds for the group (standbys able to take over). */
  protected async settleWhen(deadlineMs: number, intervalMs: number, ready: () => boolean): Promise<Member> {
    try {
      return member(await settledActive(this.env, this.name, this.vip, {
        deadlineMs,
        intervalMs,
        also: async () => ready() && (await readyNodes(this.env, this.name)) === this.nodes.length,
      }));
    } catch (err) {
      // Say what was missing: a bench that stops after an hour should say why.
      const agents = this.nodes.map((n) => `${n.name}: ${n.agent.alive() ? 'running' : 'exited'}, last said "${n.agent.lastLogged([''])?.slice(0, 80) ?? ''}"`);
      const ready = await readyNodes(this.env, this.name).catch(() => NaN);
      throw new Error(`${(err as Error).message}; readyNodes ${ready}/${this.nodes.length}; ${agents.join('; ')}`, { cause: err });
    }
  }

  async fail(owner: Member, kind: FailureKind): Promise<void> {
    const n = this.node(owner);
    if (kind === 'kill') n.agent.kill('SIGKILL');
    else if (kind === 'stop') n.agent.kill('SIGSTOP');
    else if (kind === 'cut') await this.env.net.setLink(n.ns, 'mgmt0', 'down');
    else await lanDown(this.env, n);
  }

  async recover(owner: Member, kind: FailureKind): Promise<void> {
    const n = this.node(owner);
    if (kind === 'kill') {
      await n.agent.exited;
      await this.env.restartAgent(n);
    } else if (kind === 'stop') {
      n.agent.kill('SIGCONT');
    } else if (kind === 'cut') {
      await this.env.net.setLink(n.ns, 'mgmt0', 'up');
    } else {
      await lanUp(this.env, n);
    }
  }
}

/** Our controller and agents on `nodes` (their agents run with the row's flags, see the topology). */
export class EgressgwGroup extends NodeGroup implements FailoverGroup {
  readonly row: string;

  constructor(env: TestEnv, row: string, name: string, vip: string, nodes: TestEnvNode[]) {
    super(env, name, vip, nodes);
    this.row = row;
  }

  /**
   * Every standby could take over at once: its agent is past the hold after a restart, and the
   * controller counts every node ready (an uplink back up is published and seen).
   */
  settle(deadlineMs: number): Promise<Member> {
    return this.settleWhen(deadlineMs, 50, () => this.nodes.every((n) => mayTakeVips(n.agent)));
  }

  answerDeadlineMs(): number {
    return 20_000;
  }

  close(): void {}
}

/**
 * The reference path on `nodes`: agents run with --no-heartbeat (they hold the VIP while the process
 * lives, never fence, ignore the link state), and the bench keeps a stand-in heartbeat Lease per node
 * that does not expire within the run — the reference's liveness signal, the agent pod's Ready, which
 * the kubelet of a dead node never withdraws. Detection is Node NotReady, `graceMs` after the failure.
 */
export class ReferenceGroup extends NodeGroup implements FailoverGroup {
  readonly row = 'reference';
  readonly #graceMs: number;
  readonly #uplinkWaitMs: number;
  /** Pending NotReady per failed node (cancelled if the node recovers first). */
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #notReady = new Set<string>();

  constructor(env: TestEnv, name: string, vip: string, nodes: TestEnvNode[], o: { graceMs: number; uplinkWaitMs: number }) {
    super(env, name, vip, nodes);
    this.#graceMs = o.graceMs;
    this.#uplinkWaitMs = o.uplinkWaitMs;
  }

  /** The stand-in Lease: a day long, without our annotations (the reference has no heartbeat). */
  static async standInLease(env: TestEnv, node: string): Promise<void> {
    const name = heartbeatLeaseName(node);
    const body = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace: DEFAULT_NAMESPACE },
      spec: { holderIdentity: node, leaseDurationSeconds: 86_400, renewTime: microTime(Date.now()) },
    };
    await env.client.request('DELETE', `/apis/coordination.k8s.io/v1/namespaces/${DEFAULT_NAMESPACE}/leases/${name}`).catch(() => undefined);
    await env.client.create(leases(DEFAULT_NAMESPACE), body);
  }

  settle(deadlineMs: number): Promise<Member> {
    return this.settleWhen(deadlineMs, 100, () => this.nodes.every((n) => n.agent.alive()));
  }

  override async fail(owner: Member, kind: FailureKind): Promise<void> {
    await super.fail(owner, kind);
    // A dead, frozen or partitioned node stops posting its status: NotReady after the grace period.
    if (kind === 'uplink') return;
    const name = owner.name;
    this.#timers.set(name, setTimeout(() => {
      this.#timers.delete(name);
      this.#notReady.add(name);
      void poll(`${name} NotReady`, async () => (await this.env.setNodeReady(name, false), true), 20_000, { intervalMs: 200 }).catch(() => undefined);
    }, this.#graceMs));
  }

  answerDeadlineMs(kind: FailureKind): number {
    return kind === 'uplink' ? this.#uplinkWaitMs : this.#graceMs + 20_000;
  }

  override async recover(owner: Member, kind: FailureKind): Promise<void> {
    clearTimeout(this.#timers.get(owner.name));
    this.#timers.delete(owner.name);
    await super.recover(owner, kind);
    if (this.#notReady.delete(owner.name)) {
      // Through the API's latency spikes: retried until it is in.
      await poll(`${owner.name} Ready again`, async () => (await this.env.setNodeReady(owner.name, true), true), 60_000, { intervalMs: 500 });
    }
  }

  close(): void {
    for (const t of this.#timers.values()) clearTimeout(t);
  }
}

/** keepalived between `hosts` (keepalived.ts); failure kinds: kill -9 and SIGSTOP of the daemon, uplink down. */
export class KeepalivedGroup implements FailoverGroup {
  readonly row: string;
  readonly name: string;
  readonly vip: string;
  readonly kinds: readonly FailureKind[] = ['kill', 'stop', 'uplink'];
  readonly frames: ArpEvent[] = [];
  readonly #env: TestEnv;
  readonly #daemons: Keepalived[];

  constructor(env: TestEnv, row: string, name: string, vip: string, daemons: Keepalived[]) {
    this.#env = env;
    this.row = row;
    this.name = name;
    this.vip = vip;
    this.#daemons = daemons;
  }

  get members(): Member[] {
    return this.#daemons.map((d) => member(d.host));
  }

  #daemon(m: Member): Keepalived {
    return this.#daemons.find((d) => d.host.name === m.name)!;
  }

  async settle(deadlineMs: number): Promise<Member> {
    return poll(`keepalived group ${this.name} to settle on one owner`, async () => {
      const holders: Keepalived[] = [];
      for (const d of this.#daemons) if (await d.holdsVip()) holders.push(d);
      return holders.length === 1 ? member(holders[0]!.host) : undefined;
    }, deadlineMs, { intervalMs: 100 });
  }

  async fail(owner: Member, kind: FailureKind): Promise<void> {
    const d = this.#daemon(owner);
    if (kind === 'kill') await d.signal('SIGKILL');
    else if (kind === 'stop') await d.signal('SIGSTOP');
    else await this.#env.net.setLink(d.host.ns, d.host.ifname, 'down');
  }

  answerDeadlineMs(): number {
    return 20_000;
  }

  async recover(owner: Member, kind: FailureKind): Promise<void> {
    const d = this.#daemon(owner);
    if (kind === 'kill') {
      // The killed daemon left the VIP on its interface: the operator removes it and restarts it.
      await d.kill();
      await d.dropVip();
      d.start();
    } else if (kind === 'stop') {
      await d.signal('SIGCONT');
    } else {
      await this.#env.net.setLink(d.host.ns, d.host.ifname, 'up');
    }
  }

  close(): void {}
}
