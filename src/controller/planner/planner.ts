// The incremental shell around the pure core. The informer handlers are dumb: they record the object
// and which of its names changed. A pass then works out which gateways and nodes those changes touch
// (by the indexes below: node → selector groups and referring gateways, policy → gateway, pod → node,
// instance → owner, CEGP → policy → gateway, heartbeat → node), plans those again with the core's pure
// `planGateway` / `planNode`, reuses every other plan (plans are immutable), and settles what couples
// gateways with the core's `settleElections` and `assembleWrites` over all plans.
//
// The result of every pass is exactly the core's whole `reconcile` of the same cluster: a property
// test (planner.test.ts) compares them over random sequences of changes.
//
//   informer event ─handler─▶ pending (name) ─pass─▶ indexes ─▶ marked gateways ─planGateway─▶ plans
//                                                               marked nodes ◀─ contributions ─┘
//                                                               ─planNode─▶ node plans ─▶ writes

import type { CiliumEgressGatewayPolicy, CiliumNodeLike, EgressGateway, EgressGatewayDataplane, EgressGatewayInstance, EgressGatewayPolicy, NodeLike, PodLike } from '../../api/types.ts';
import { ACTIVE_FOR_PREFIX, activeForLabel, cegpName } from '../../api/names.ts';
import {
  agentCanAct,
  analyseGateway,
  analysePolicy,
  assembleWrites,
  desiredOf,
  gatewayRefs,
  metricsOf,
  nodeContribution,
  planGateway,
  planNode,
  resolveOptions,
  settleElections,
  type CoreMetrics,
  type CoreOptions,
  type Desired,
  type GatewayInfo,
  type GatewayInputs,
  type GatewayPlan,
  type Heartbeat,
  type NodePlan,
  type NodeState,
  type PolicyInfo,
  type Write,
} from '../../core/index.ts';
import { fresher, heartbeatFacts, heartbeatLive, nodeState, sameNodeState, type PodState } from '../../core/eligibility.ts';
import { gatewayOfInstanceName, instanceFacts, ownerOf, type InstanceFacts } from '../../core/instances.ts';
import type { Leftovers } from '../../core/combine.ts';
import { observedCEGPs } from '../../core/partition.ts';
import { crossObjectRules, duplicateOf, nodeAddresses, type DuplicateVIP } from '../../core/validate.ts';
import { byString, isObject, nameOf } from '../../core/util.ts';
import { PodsByNode, Relation, SelectorGroups, selectorKey, type SelectorGroup } from './indexes.ts';

export type Change = 'add' | 'update' | 'delete';

/** The watched lists the planner takes events of (the controller's informer caches, leases aside). */
export const WATCHED = ['nodes', 'ciliumNodes', 'ciliumAgentPods', 'agentPods', 'gateways', 'policies', 'instances', 'cegps'] as const;
/** `dataplanes` only with `--dataplane linux` (the shell watches them then). */
export type Watched = (typeof WATCHED)[number] | 'dataplanes';

export interface PassOutput {
  writes: Write[];
  metrics: CoreMetrics;
  /** How many gateway names and nodes this pass planned again (the others' plans were reused). */
  planned: { gateways: number; nodes: number };
  /** Only when asked for (tests, the onPass hook): the Desired view of the plans. */
  desired?: Desired;
}

const NONE: readonly string[] = Object.freeze([]);
const NO_NAMES: ReadonlySet<string> = new Set();

export class Planner {
  readonly options: CoreOptions;
  // What the handlers recorded since the last pass (name → latest object; undefined: deleted).
  private readonly pending = {
    nodes: new Map<string, NodeLike | undefined>(),
    gateways: new Map<string, EgressGateway | undefined>(),
    policies: new Map<string, EgressGatewayPolicy | undefined>(),
    instances: new Map<string, EgressGatewayInstance | undefined>(),
    /** Nodes whose pods changed; CiliumNodes and CEGPs that changed (by name). */
    podNodes: new Set<string>(),
    ciliumNodes: new Set<string>(),
    cegps: new Set<string>(),
    dataplanes: new Set<string>(),
  };
  // The cluster as the plans see it.
  private readonly nodes = new Map<string, NodeLike>();
  private readonly nodeStates = new Map<string, NodeState>();
  /** Nodes whose state has a heartbeat (to notice one that disappears). */
  private withHeartbeat = 0;
  private readonly ciliumNodes = new Map<string, CiliumNodeLike>();
  private readonly ciliumPods = new PodsByNode();
  private readonly agentPods = new PodsByNode();
  /** Each node's own addresses, and the node of each address (a VIP must not be one: crossObjectRules). */
  private readonly addressesOf = new Map<string, readonly string[]>();
  private addressOwners = new Map<string, string>();
  /** Gateway analyses, and the same with the cross-object rules applied (what plans read). */
  private readonly gateways = new Map<string, GatewayInfo>();
  private readonly effective = new Map<string, GatewayInfo>();
  private duplicateVIPs: DuplicateVIP[] = [];
  private readonly policies = new Map<string, PolicyInfo>();
  private readonly instances = new Map<string, InstanceFacts>();
  private readonly cegps = new Map<string, CiliumEgressGatewayPolicy>();
  /** `--dataplane linux`: our dataplane objects, by (gateway) name. */
  private readonly dataplanes = new Map<string, EgressGatewayDataplane>();
  // Indexes: from what changed to the gateways and nodes that read it.
  private readonly groups = new SelectorGroups();
  /** gateway → the key of its selector group. */
  private readonly groupOf = new Map<string, string>();
  /** gateway → nodes carrying its active-for label. */
  private readonly holders = new Relation();
  /** node → gateways whose plans read its state outside their candidates (gatewayRefs). */
  private readonly refs = new Relation();
  private readonly refsOf = new Map<string, readonly string[]>();
  private readonly policiesOf = new Relation();
  private readonly ownerOf = new Map<string, string>();
  private readonly owned = new Relation();
  private readonly unowned = new Set<string>();
  /** gateway → instance names that are its instance names (gatewayOfInstanceName). */
  private readonly taken = new Relation();
  /** Instances by the gateway name and uid their owner reference names (to resolve again when gateways change). */
  private readonly byRefName = new Relation();
  private readonly byRefUid = new Relation();
  private readonly gatewaysByUid = new Relation();
  /** CEGPs named d8.<policy> of no policy. */
  private readonly leftoverCEGPs = new Set<string>();
  // Plans.
  private readonly plans = new Map<string, GatewayPlan>();
  private planNames: string[] = [];
  private readonly nodePlans = new Map<string, NodePlan>();
  /** The valid plans' group (to count the group's valid gateways) and active node. */
  private readonly counted = new Map<string, { group: SelectorGroup; key: string; active: string }>();
  private readonly activeOn = new Relation();
  /** A pass failed half way: plan everything again. */
  private replanAll = false;

  constructor(options?: Partial<CoreOptions>) {
    this.options = resolveOptions(options);
  }

  /** The handler of one watched list's events. */
  handle(list: Watched, type: Change, o: never): void {
    switch (list) {
      case 'nodes':
        return this.node(type, o);
      case 'ciliumNodes':
        return this.ciliumNode(type, o);
      case 'ciliumAgentPods':
        return this.ciliumAgentPod(type, o);
      case 'agentPods':
        return this.agentPod(type, o);
      case 'gateways':
        return this.gateway(type, o);
      case 'policies':
        return this.policy(type, o);
      case 'instances':
        return this.instance(type, o);
      case 'cegps':
        return this.cegp(type, o);
      case 'dataplanes':
        return this.dataplane(type, o);
    }
  }

  // Informer handlers: record, nothing else.
  node(type: Change, o: NodeLike): void {
    this.pending.nodes.set(nameOf(o), type === 'delete' ? undefined : o);
  }
  ciliumNode(type: Change, o: CiliumNodeLike): void {
    const name = nameOf(o);
    if (type === 'delete') this.ciliumNodes.delete(name);
    else this.ciliumNodes.set(name, o);
    this.pending.ciliumNodes.add(name);
  }
  ciliumAgentPod(type: Change, o: PodLike): void {
    const wasEmpty = this.ciliumPods.empty();
    for (const n of this.ciliumPods.set(o, type === 'delete')) this.pending.podNodes.add(n);
    // The first cilium-agent pod, or the last one gone, changes every node's state (CiliumAgentNotFound).
    if (wasEmpty !== this.ciliumPods.empty()) for (const n of this.nodes.keys()) this.pending.podNodes.add(n);
  }
  agentPod(type: Change, o: PodLike): void {
    for (const n of this.agentPods.set(o, type === 'delete')) this.pending.podNodes.add(n);
  }
  gateway(type: Change, o: EgressGateway): void {
    this.pending.gateways.set(nameOf(o), type === 'delete' ? undefined : o);
  }
  policy(type: Change, o: EgressGatewayPolicy): void {
    this.pending.policies.set(nameOf(o), type === 'delete' ? undefined : o);
  }
  instance(type: Change, o: EgressGatewayInstance): void {
    this.pending.instances.set(nameOf(o), type === 'delete' ? undefined : o);
  }
  dataplane(type: Change, o: EgressGatewayDataplane): void {
    const name = nameOf(o);
    if (type === 'delete') this.dataplanes.delete(name);
    else this.dataplanes.set(name, o);
    this.pending.dataplanes.add(name);
  }
  cegp(type: Change, o: CiliumEgressGatewayPolicy): void {
    const name = nameOf(o);
    if (type === 'delete') this.cegps.delete(name);
    else this.cegps.set(name, o);
    this.pending.cegps.add(name);
  }

  /**
   * One pass at `now` (the controller's clock). `heartbeats`: the heartbeat tracker's records, read
   * during the call only.
   */
  pass(now: number, heartbeats: readonly Heartbeat[], opts: { desired?: boolean } = {}): PassOutput {
    const marked = new Set<string>();
    const nodeMarks = new Set<string>();
    const all = this.replanAll;
    this.replanAll = true;
    const hb = heartbeatLookup(heartbeats);
    this.applyGateways(marked, this.applyNodeAddresses());
    this.applyNodes(now, hb, marked, nodeMarks);
    this.applyPolicies(marked);
    this.applyCEGPs(marked);
    // A dataplane object changed: its gateway's plan compares against it (a name without a plan is a leftover).
    for (const name of this.pending.dataplanes) marked.add(name);
    this.pending.dataplanes.clear();
    this.applyInstances(marked);
    for (const [name, p] of this.plans) if (now < p.validFrom || now >= p.validUntil) marked.add(name);
    if (all) {
      for (const name of [...this.planNames, ...this.gateways.keys(), ...this.policiesOf.keys()]) marked.add(name);
      for (const name of [...this.nodePlans.keys(), ...this.nodeStates.keys(), ...this.ciliumNodes.keys()]) nodeMarks.add(name);
    }
    const planned = this.replan(now, marked, nodeMarks);
    this.planNodes(nodeMarks);
    const sorted = this.planNames.map((n) => this.plans.get(n) as GatewayPlan);
    const writes = assembleWrites(sorted, this.nodePlans.values(), this.leftovers(), (n) => agentCanAct(this.nodeStates.get(n), this.nodePlans.get(n)));
    this.replanAll = false;
    const out: PassOutput = { writes, metrics: metricsOf(sorted, this.duplicateVIPs), planned: { gateways: planned, nodes: nodeMarks.size } };
    if (opts.desired) out.desired = desiredOf(sorted, this.nodePlans.values(), this.duplicateVIPs);
    return out;
  }

  private leftovers(): Leftovers {
    const instances = [...this.unowned].map((n) => this.instances.get(n) as InstanceFacts);
    // The Linux data plane writes no CEGPs, and so deletes none either.
    const cegps = this.options.dataplane === 'linux' ? [] : [...this.leftoverCEGPs].map((n) => this.cegps.get(n) as CiliumEgressGatewayPolicy);
    const dataplanes = [...this.dataplanes.values()].filter((o) => !this.plans.has(o.metadata.name));
    return { instances, cegps, dataplanes };
  }

  /** The node address index from the nodes that changed; true when an address came or went. */
  private applyNodeAddresses(): boolean {
    let changed = false;
    for (const [name, o] of this.pending.nodes) {
      const now = o ? nodeAddresses(o) : NONE;
      const was = this.addressesOf.get(name) ?? NONE;
      if (now.length === was.length && now.every((a, i) => a === was[i])) continue;
      changed = true;
      if (now.length > 0) this.addressesOf.set(name, now);
      else this.addressesOf.delete(name);
    }
    if (!changed) return false;
    const owners = new Map<string, string>();
    for (const [name, list] of this.addressesOf) {
      for (const ip of list) {
        const had = owners.get(ip);
        if (had === undefined || byString(name, had) < 0) owners.set(ip, name);
      }
    }
    this.addressOwners = owners;
    return true;
  }

  // Gateways: analyses, selector groups, uids, and the cross-object rules over all of them.
  private applyGateways(marked: Set<string>, addressesChanged: boolean): void {
    if (this.pending.gateways.size === 0 && !addressesChanged) return;
    for (const [name, o] of this.pending.gateways) {
      const old = this.gateways.get(name);
      const info = o ? analyseGateway(o) : undefined;
      // Its selector group (usually the same: a status write changes no selector).
      const was = this.groupOf.get(name);
      const key = info?.selectorValid ? selectorKey(info.selector) : undefined;
      if (was !== key) {
        if (was !== undefined) this.groups.leave(was, name);
        if (info && key !== undefined) this.groups.join(key, info.selector, name, this.nodeStates.values());
        if (key !== undefined) this.groupOf.set(name, key);
        else this.groupOf.delete(name);
      }
      if (old?.uid) this.gatewaysByUid.delete(old.uid, name);
      if (info) {
        this.gateways.set(name, info);
        if (info.uid) this.gatewaysByUid.add(info.uid, name);
      } else this.gateways.delete(name);
      marked.add(name);
      // Instances may belong to this gateway, or no longer (owner references are by uid and name).
      for (const i of [...this.byRefName.get(name), ...(old?.uid ? this.byRefUid.get(old.uid) : []), ...(info?.uid ? this.byRefUid.get(info.uid) : [])]) {
        if (!this.pending.instances.has(i)) this.pending.instances.set(i, this.instances.get(i)?.instance);
      }
    }
    this.pending.gateways.clear();
    const { groups, losers } = crossObjectRules([...this.gateways.values()], this.addressOwners);
    this.duplicateVIPs = groups;
    for (const [name, g] of this.gateways) {
      const was = this.effective.get(name);
      const invalid = losers.get(g);
      const want = invalid ?? g.invalid;
      if (was && was.gateway === g.gateway && was.invalid?.reason === want?.reason && was.invalid?.message === want?.message) continue;
      this.effective.set(name, duplicateOf(g, invalid));
      marked.add(name);
    }
    for (const name of this.effective.keys()) if (!this.gateways.has(name)) this.effective.delete(name);
  }

  // Nodes: state from the Node, its pods and its heartbeat; group membership; active-for holders.
  private applyNodes(now: number, hb: HeartbeatLookup, marked: Set<string>, nodeMarks: Set<string>): void {
    const dirty = new Set<string>([...this.pending.nodes.keys(), ...this.pending.podNodes]);
    for (const n of this.pending.ciliumNodes) nodeMarks.add(n);
    this.pending.ciliumNodes.clear();
    this.expiredOrRenewed(now, hb, dirty);
    for (const [name, o] of this.pending.nodes) {
      if (o) this.nodes.set(name, o);
      else this.nodes.delete(name);
    }
    this.pending.nodes.clear();
    this.pending.podNodes.clear();
    for (const name of dirty) {
      const node = this.nodes.get(name);
      const old = this.nodeStates.get(name);
      const st = node ? nodeState(name, node, this.ciliumState(name), this.agentPods.state(name), heartbeatFacts(hb(name), now)) : undefined;
      if (sameNodeState(old, st)) continue;
      this.setNodeState(name, st);
      nodeMarks.add(name);
      this.groups.nodeChanged(old, st, (g) => {
        for (const gw of g.gateways) marked.add(gw);
      });
      for (const gw of this.refs.get(name)) marked.add(gw);
      for (const gw of this.holdersChanged(name, old, st)) marked.add(gw);
    }
    this.groups.commit();
  }

  /** As buildNodeStates: with no cilium-agent pod anywhere, every node's is 'notFound', not 'none'. */
  private ciliumState(name: string): PodState {
    return this.ciliumPods.empty() ? 'notFound' : this.ciliumPods.state(name);
  }

  private setNodeState(name: string, st: NodeState | undefined): void {
    const old = this.nodeStates.get(name);
    if (old && old.heartbeat !== 'absent') this.withHeartbeat--;
    if (st && st.heartbeat !== 'absent') this.withHeartbeat++;
    if (st) this.nodeStates.set(name, st);
    else this.nodeStates.delete(name);
  }

  /** Heartbeats expire with time alone: every pass compares each node's heartbeat facts with its state. */
  private expiredOrRenewed(now: number, hb: HeartbeatLookup, dirty: Set<string>): void {
    let seen = 0;
    hb.forEach((h) => {
      const st = this.nodeStates.get(h.node);
      if (!st) return;
      if (st.heartbeat !== 'absent') seen++;
      // heartbeatFacts without the object: this runs for every node on every pass.
      const live = heartbeatLive(h, now) ? 'live' : 'expired';
      const uplinks = isObject(h.uplinks) ? h.uplinks : undefined;
      if (live !== st.heartbeat || uplinks !== st.uplinks) dirty.add(h.node);
    });
    // Fewer heartbeats than states with one: some Lease went away.
    if (seen < this.withHeartbeat) for (const [n, st] of this.nodeStates) if (st.heartbeat !== 'absent' && !hb(n)) dirty.add(n);
  }

  /** Update the active-for holders from a node's old and new labels; returns the gateways whose holders changed. */
  private holdersChanged(name: string, old: NodeState | undefined, now: NodeState | undefined): string[] {
    if (old && now && old.labels === now.labels) return [];
    const out: string[] = [];
    for (const k in old?.labels ?? {}) {
      if (k.startsWith(ACTIVE_FOR_PREFIX) && !(now && Object.hasOwn(now.labels, k))) {
        const gw = k.slice(ACTIVE_FOR_PREFIX.length);
        this.holders.delete(gw, name);
        out.push(gw);
      }
    }
    for (const k in now?.labels ?? {}) {
      if (k.startsWith(ACTIVE_FOR_PREFIX) && !(old && Object.hasOwn(old.labels, k))) {
        const gw = k.slice(ACTIVE_FOR_PREFIX.length);
        this.holders.add(gw, name);
        out.push(gw);
      }
    }
    return out;
  }

  // Policies: analyses and the gateway each names; a CEGP of a policy that went away is a leftover.
  private applyPolicies(marked: Set<string>): void {
    for (const [name, o] of this.pending.policies) {
      const old = this.policies.get(name);
      const info = o ? analysePolicy(o) : undefined;
      if (old) {
        this.policiesOf.delete(old.gatewayName, name);
        marked.add(old.gatewayName);
      }
      if (info) {
        this.policies.set(name, info);
        this.policiesOf.add(info.gatewayName, name);
        marked.add(info.gatewayName);
      } else this.policies.delete(name);
      const c = cegpName(name);
      if (!info && this.cegps.has(c)) this.leftoverCEGPs.add(c);
      else this.leftoverCEGPs.delete(c);
    }
    this.pending.policies.clear();
  }

  private applyCEGPs(marked: Set<string>): void {
    for (const name of this.pending.cegps) {
      if (!name.startsWith('d8.')) continue;
      const p = this.policies.get(name.slice(3));
      if (p) marked.add(p.gatewayName);
      else if (this.cegps.has(name)) this.leftoverCEGPs.add(name);
      else this.leftoverCEGPs.delete(name);
    }
    this.pending.cegps.clear();
  }

  // Instances: facts, owner (by uid or name, so also when gateways change), and the gateway their name is of.
  private applyInstances(marked: Set<string>): void {
    for (const [name, o] of this.pending.instances) {
      const old = this.instances.get(name);
      const was = this.ownerOf.get(name);
      if (old) this.unindexRef(old.instance);
      const f = o === old?.instance && old ? old : o ? instanceFacts(o) : undefined;
      const owner = f ? ownerOf(f.instance, (uid) => this.gatewayWithUid(uid), (n) => this.gateways.get(n)?.uid) : undefined;
      if (was !== undefined) this.owned.delete(was, name);
      this.ownerOf.delete(name);
      this.unowned.delete(name);
      if (f) {
        this.instances.set(name, f);
        this.indexRef(f.instance);
        if (owner !== undefined) {
          this.ownerOf.set(name, owner);
          this.owned.add(owner, name);
        } else this.unowned.add(name);
      } else this.instances.delete(name);
      if (was !== undefined && (was !== owner || f !== old)) marked.add(was);
      if (owner !== undefined && (was !== owner || f !== old)) marked.add(owner);
      const g = gatewayOfInstanceName(name);
      if (g !== undefined && !f !== !old) {
        if (f) this.taken.add(g, name);
        else this.taken.delete(g, name);
        marked.add(g);
      }
    }
    this.pending.instances.clear();
  }

  /** The gateway with this uid (the last in name order, should several have it). */
  private gatewayWithUid(uid: string): string | undefined {
    let best: string | undefined;
    for (const n of this.gatewaysByUid.get(uid)) if (best === undefined || byString(n, best) > 0) best = n;
    return best;
  }

  private indexRef(inst: EgressGatewayInstance): void {
    for (const r of inst.metadata?.ownerReferences ?? []) {
      if (typeof r?.name === 'string') this.byRefName.add(r.name, inst.metadata.name);
      if (typeof r?.uid === 'string' && r.uid !== '') this.byRefUid.add(r.uid, inst.metadata.name);
    }
  }

  private unindexRef(inst: EgressGatewayInstance): void {
    for (const r of inst.metadata?.ownerReferences ?? []) {
      if (typeof r?.name === 'string') this.byRefName.delete(r.name, inst.metadata.name);
      if (typeof r?.uid === 'string' && r.uid !== '') this.byRefUid.delete(r.uid, inst.metadata.name);
    }
  }

  /** Everything a plan of `name` reads, from the current state. */
  private inputsOf(name: string, now: number): GatewayInputs {
    const g = this.effective.get(name);
    const key = this.groupOf.get(name);
    const candidateNames = key !== undefined ? (this.groups.byKey.get(key)?.names ?? NONE) : NONE;
    const instances = this.owned.sorted(name).map((n) => this.instances.get(n) as InstanceFacts);
    const labelled = this.holders.sorted(name);
    const names = gatewayRefs(g, labelled, instances);
    const refs = new Map<string, NodeState>();
    for (const n of names) {
      const st = this.nodeStates.get(n);
      if (st) refs.set(n, st);
    }
    this.setRefs(name, names);
    const policies = this.policiesOf.sorted(name).map((n) => this.policies.get(n) as PolicyInfo);
    return {
      name,
      now,
      options: this.options,
      gateway: g,
      candidateNames,
      candidates: candidateNames.map((n) => this.nodeStates.get(n) as NodeState),
      refs,
      labelled,
      instances,
      takenNames: this.taken.has(name) ? new Set(this.taken.get(name)) : NO_NAMES,
      policies,
      cegps: observedCEGPs(policies, this.cegps),
      ...(this.dataplanes.has(name) ? { dataplane: this.dataplanes.get(name) } : {}),
    };
  }

  private setRefs(name: string, refs: readonly string[]): void {
    for (const n of this.refsOf.get(name) ?? []) this.refs.delete(n, name);
    for (const n of refs) this.refs.add(n, name);
    if (refs.length > 0) this.refsOf.set(name, refs);
    else this.refsOf.delete(name);
  }

  /**
   * Plan the marked gateway names again, settle the elections over all plans, and record what changed
   * for the nodes. The marked ones are planned in name order with the election counts as they stand
   * at their place (every kept node, the last pass's for the marked ones not planned yet, and the
   * nodes elected before), so settleElections rarely has to plan one again.
   */
  private replan(now: number, marked: ReadonlySet<string>, nodeMarks: Set<string>): number {
    const todo = [...marked].filter((n) => this.plans.has(n) || this.gateways.has(n) || this.policiesOf.has(n));
    if (todo.length === 0) return 0;
    const before = new Map(todo.map((n) => [n, this.plans.get(n)]));
    if (todo.some((n) => !this.plans.has(n) || !(this.gateways.has(n) || this.policiesOf.has(n)))) {
      this.planNames = [...new Set([...this.planNames, ...todo])].sort(byString);
    }
    const load = new Map<string, number>();
    const bump = (n: string | undefined, d: number): void => {
      if (n) load.set(n, (load.get(n) ?? 0) + d);
    };
    for (const p of this.plans.values()) bump(p.election?.keep, 1);
    for (const name of this.planNames) {
      const old = this.plans.get(name);
      if (!before.has(name)) {
        if (old?.election?.byLoad) bump(old.election.target, 1);
        continue;
      }
      bump(old?.election?.keep, -1);
      if (this.gateways.has(name) || this.policiesOf.has(name)) {
        const p = planGateway(this.inputsOf(name, now), load);
        this.plans.set(name, p);
        bump(p.election?.target, 1);
      } else {
        this.plans.delete(name);
        this.setRefs(name, NONE);
      }
    }
    this.planNames = this.planNames.filter((n) => this.plans.has(n));
    const sorted = this.planNames.map((n) => this.plans.get(n) as GatewayPlan);
    // A reused plan's inputs are current but for the time.
    const settled = settleElections(sorted, (inputs, l) => planGateway({ ...inputs, now }, l));
    settled.forEach((p, i) => {
      if (p === sorted[i]) return;
      if (!before.has(p.name)) before.set(p.name, sorted[i]);
      this.plans.set(p.name, p);
    });
    for (const name of before.keys()) this.contributionChanged(name, this.plans.get(name), nodeMarks);
    return before.size;
  }

  /** A plan changed: its candidates' member label (through its group's valid count) and its active-for label. */
  private contributionChanged(name: string, now: GatewayPlan | undefined, nodeMarks: Set<string>): void {
    const was = this.counted.get(name);
    const c = now ? nodeContribution(now) : undefined;
    const key = this.groupOf.get(name);
    const group = c && key !== undefined ? this.groups.byKey.get(key) : undefined;
    const is = c && group && key !== undefined ? { group, key, active: c.active } : undefined;
    if (was?.group !== is?.group) {
      if (was && this.groups.countValid(was.key, was.group, -1) === 0) for (const n of was.group.names) nodeMarks.add(n);
      if (is && this.groups.countValid(is.key, is.group, 1) === 1) for (const n of is.group.names) nodeMarks.add(n);
    }
    if ((was?.active ?? '') !== (is?.active ?? '')) {
      if (was?.active) {
        this.activeOn.delete(was.active, name);
        nodeMarks.add(was.active);
      }
      if (is?.active) {
        this.activeOn.add(is.active, name);
        nodeMarks.add(is.active);
      }
    }
    if (is) this.counted.set(name, is);
    else this.counted.delete(name);
  }

  private planNodes(nodeMarks: ReadonlySet<string>): void {
    for (const name of nodeMarks) {
      const state = this.nodeStates.get(name);
      const ciliumNode = this.ciliumNodes.get(name);
      if (!state && !ciliumNode) {
        this.nodePlans.delete(name);
        continue;
      }
      const active = this.activeOn.sorted(name).map(activeForLabel);
      this.nodePlans.set(name, planNode({ name, state, ciliumNode, selected: this.groups.selected(name), active }));
    }
  }
}

/**
 * Heartbeats by node: a binary search in the tracker's list (strictly increasing node names), else an
 * index of each node's freshest one. `forEach` visits one per node.
 */
type HeartbeatLookup = ((node: string) => Heartbeat | undefined) & { forEach(fn: (h: Heartbeat) => void): void };

function heartbeatLookup(hbs: readonly Heartbeat[]): HeartbeatLookup {
  let sorted = true;
  for (let i = 1; i < hbs.length && sorted; i++) sorted = (hbs[i - 1] as Heartbeat).node < (hbs[i] as Heartbeat).node;
  if (!sorted) {
    const m = new Map<string, Heartbeat>();
    for (const h of hbs) if (typeof h?.node === 'string') m.set(h.node, fresher(m.get(h.node), h));
    return Object.assign((n: string) => m.get(n), { forEach: (fn: (h: Heartbeat) => void) => m.forEach((h) => fn(h)) });
  }
  const find = (n: string): Heartbeat | undefined => {
    let lo = 0;
    let hi = hbs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const h = hbs[mid] as Heartbeat;
      if (h.node === n) return h;
      if (h.node < n) lo = mid + 1;
      else hi = mid;
    }
    return undefined;
  };
  return Object.assign(find, { forEach: (fn: (h: Heartbeat) => void) => hbs.forEach((h) => fn(h)) });
}
