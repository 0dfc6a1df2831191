// Observed snapshot → desired state. One pass, no I/O, no clock: time is `snapshot.now`.

import type { CiliumEgressGatewayPolicy, EgressGateway, EgressGatewayInstance, EgressGatewayPolicy, EgressGatewayPolicyStatus } from '../api/types.ts';
import { ACTIVE_FOR_PREFIX, ASSIGNED_AT_ANNOTATION, MEMBER_LABEL, MODE_VIP, OWNED_LABELS, activeForLabel, cegpName } from '../api/names.ts';
import type { CoreEvent, CoreMetrics, CoreOptions, Desired, GatewayDecision, Snapshot } from './types.ts';
import { DEFAULT_CORE_OPTIONS } from './types.ts';
import { buildNodeStates, isMemberCandidate, type NodeState } from './eligibility.ts';
import { runElection } from './election.ts';
import { desiredInstance, instanceFacts, ownerRef, type InstanceFacts } from './instances.ts';
import { egressGatewaySpec, policyOutcome, type GatewayView, type PolicyOutcome } from './render.ts';
import { NodeLabelIndex } from './selectors.ts';
import { gatewayOutcome, gatewayRef } from './status.ts';
import { analyseGateway, analysePolicy, findDuplicateVIPs, markInvalid, type GatewayInfo, type PolicyInfo } from './validate.ts';
import { byString, changedByPosition, forEachByName, instanceName, isObject, labelsOf, nameOf, toIso } from './util.ts';
import { sameItems, type CoreCache } from './cache.ts';

export function resolveOptions(options?: Partial<CoreOptions>): CoreOptions {
  const o: CoreOptions = { ...DEFAULT_CORE_OPTIONS };
  if (options && typeof options.handoverTimeoutMs === 'number' && Number.isFinite(options.handoverTimeoutMs)) {
    o.handoverTimeoutMs = options.handoverTimeoutMs;
  }
  if (options && typeof options.requireCiliumAgent === 'boolean') o.requireCiliumAgent = options.requireCiliumAgent;
  if (options && typeof options.ciliumAgentSource === 'string') o.ciliumAgentSource = options.ciliumAgentSource;
  return o;
}

/** Is this one of our CEGPs (OWNED_LABELS and a `d8.` name)? Only those are ever deleted. */
export function isOurCEGP(c: CiliumEgressGatewayPolicy): boolean {
  const name = nameOf(c);
  if (!name.startsWith('d8.')) return false;
  const l = labelsOf(c);
  for (const [k, v] of Object.entries(OWNED_LABELS)) if (l[k] !== v) return false;
  return true;
}

/** `fn` of each object with a usable name, in name order (see forEachByName). */
function mapUniqueSorted<T, R>(items: readonly T[] | undefined, fn: (name: string, item: T) => R): R[] {
  const out: R[] = [];
  forEachByName(items ?? [], (name, item) => out.push(fn(name, item)));
  return out;
}

/** Shallow equality of two label maps. */
function labelsEqual(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>> | undefined): boolean {
  if (a === b) return true;
  if (!b) return false;
  let n = 0;
  for (const k in a) {
    if (a[k] !== b[k] || !Object.hasOwn(b, k)) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
}

/** Keys whose value differs between two label maps (added, removed or changed) go into `out`. */
function changedKeys(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>, out: Set<string>): void {
  for (const k in a) if (!Object.hasOwn(b, k) || a[k] !== b[k]) out.add(k);
  for (const k in b) if (!Object.hasOwn(a, k)) out.add(k);
}

/** The active-for holders after some nodes' labels changed (new lists for the gateways concerned, in name order). */
function relabelHolders(labelled: ReadonlyMap<string, string[]>, changes: ReadonlyArray<{ old: NodeState; now: NodeState }>): Map<string, string[]> {
  const out = new Map(labelled);
  for (const { old, now } of changes) {
    for (const k in old.labels) {
      if (!k.startsWith(ACTIVE_FOR_PREFIX) || Object.hasOwn(now.labels, k)) continue;
      const gw = k.slice(ACTIVE_FOR_PREFIX.length);
      const list = (out.get(gw) ?? []).filter((n) => n !== now.name);
      if (list.length > 0) out.set(gw, list);
      else out.delete(gw);
    }
    for (const k in now.labels) {
      if (!k.startsWith(ACTIVE_FOR_PREFIX) || Object.hasOwn(old.labels, k)) continue;
      const gw = k.slice(ACTIVE_FOR_PREFIX.length);
      out.set(gw, [...(out.get(gw) ?? []), now.name].sort(byString));
    }
  }
  return out;
}

/** The label index and the active-for holders; they depend on node labels only. */
function nodeIndex(nodes: Map<string, NodeState>, cache: CoreCache | undefined): { index: NodeLabelIndex; labelled: Map<string, string[]> } {
  const prev = cache?.nodeIndex;
  if (prev && cache) {
    let same = prev.version === cache.nodesVersion;
    const changes = cache.nodeChanges;
    if (!same && changes !== 'all' && prev.version === cache.nodesVersion - 1) {
      // Updated in place since the index was last checked: only the changed nodes' labels matter, and
      // of those only the keys some selector has looked up (our own labels, written on every
      // failover, never are): then the index stays, and only the active-for holders are updated.
      const keys = new Set<string>();
      for (const c of changes) if (c.now.labels !== c.old.labels) changedKeys(c.old.labels, c.now.labels, keys);
      if (keys.size === 0) same = true;
      else if (!prev.index.looksUpAny(keys)) {
        for (const c of changes) if (c.now.labels !== c.old.labels) prev.index.relabel(c.now.name, c.now.labels);
        let holders = false;
        for (const k of keys) if (k.startsWith(ACTIVE_FOR_PREFIX)) holders = true;
        if (holders) prev.labelled = relabelHolders(prev.labelled, changes);
        same = true;
      }
    } else if (!same && changes === 'all' && prev.states.size === nodes.size) {
      // Rebuilt: compare with the states the index was last checked against.
      same = true;
      for (const st of nodes.values()) {
        const old = prev.states.get(st.name);
        if (!old || (old !== st && !labelsEqual(st.labels, old.labels))) {
          same = false;
          break;
        }
      }
    }
    if (same) {
      prev.states = nodes;
      prev.version = cache.nodesVersion;
      return prev;
    }
  }
  // Which nodes carry active-for-<G> today (Node labels: that is where Cilium's agent syncs from).
  const labelled = new Map<string, string[]>();
  const labelMap = new Map<string, Readonly<Record<string, string>>>();
  for (const st of nodes.values()) {
    labelMap.set(st.name, st.labels);
    for (const k in st.labels) {
      if (!k.startsWith(ACTIVE_FOR_PREFIX)) continue;
      const gw = k.slice(ACTIVE_FOR_PREFIX.length);
      const list = labelled.get(gw);
      if (list) list.push(st.name);
      else labelled.set(gw, [st.name]);
    }
  }
  const out = { states: nodes, version: cache?.nodesVersion ?? 0, index: new NodeLabelIndex(labelMap), labelled };
  if (cache) cache.nodeIndex = out;
  return out;
}

interface GatewaySet {
  infos: GatewayInfo[];
  duplicateVIPs: Array<{ ip: string; gateways: string[] }>;
  byName: Map<string, GatewayInfo>;
  byUid: Map<string, GatewayInfo>;
}

/**
 * Gateways: validated (per object, remembered), then the duplicate-VIP rule (needs all of them). A
 * remembered info is never changed: a gateway losing its VIP gets a copy carrying `invalid`.
 */
function gatewaySet(items: readonly EgressGateway[] | undefined, cache: CoreCache | undefined): GatewaySet {
  if (cache?.gateways && sameItems(cache.gateways.items, items)) return cache.gateways.result;
  const infos: GatewayInfo[] = mapUniqueSorted(items, (_name, item) => {
    let info = cache?.gatewayInfo.get(item);
    if (!info) {
      info = analyseGateway(item);
      markInvalid(info);
      cache?.gatewayInfo.set(item, info);
    }
    return info;
  });
  const { groups, losers } = findDuplicateVIPs(infos);
  for (let i = 0; i < infos.length; i++) {
    const g = infos[i] as GatewayInfo;
    const invalid = losers.get(g);
    if (!invalid) continue;
    let copy = cache?.duplicateCopy.get(g);
    if (!copy || copy.invalid?.message !== invalid.message) {
      copy = { ...g, invalid };
      cache?.duplicateCopy.set(g, copy);
    }
    infos[i] = copy;
  }
  const byName = new Map(infos.map((g) => [g.name, g]));
  const byUid = new Map<string, GatewayInfo>();
  for (const g of infos) if (g.uid !== '') byUid.set(g.uid, g);
  const result = { infos, duplicateVIPs: groups, byName, byUid };
  if (cache) cache.gateways = { items, result };
  return result;
}

function policyList(items: readonly EgressGatewayPolicy[] | undefined, cache: CoreCache | undefined): PolicyInfo[] {
  const prev = cache?.policies;
  if (cache && prev && sameItems(prev.items, items)) {
    cache.policyObjectChanges = { from: prev.items, to: items, names: NO_NAMES };
    return prev.result;
  }
  const changed = cache && prev?.items && items ? changedByPosition(prev.items, items) : undefined;
  // Usually a few policies changed (their statuses were written): the same names at the same places,
  // so the order and uniqueness checked last time still hold (if last time's results were in the
  // list's own order: nothing sorted or dropped); only those are analysed again.
  if (cache && prev && changed && prev.result.length === prev.items?.length && prev.result.every((p, i) => p.policy === prev.items?.[i])) {
    const result = prev.result.slice();
    (items as readonly EgressGatewayPolicy[]).forEach((item, i) => {
      if (item === prev.items?.[i]) return;
      const info = analysePolicy(item);
      cache.policyInfo.set(info.name, info);
      result[i] = info;
    });
    cache.policies = { items, result };
    cache.policyObjectChanges = { from: prev.items, to: items, names: new Set(changed.keys()) };
    return result;
  }
  if (cache) cache.policyObjectChanges = { from: prev?.items, to: items, names: 'all' };
  // Policy analysis depends on the object only (informer objects are immutable): remembered per object.
  const result = mapUniqueSorted(items, (name, item) => {
    const seen = cache?.policyInfo.get(name);
    if (seen && seen.policy === item) return seen;
    const info = analysePolicy(item);
    cache?.policyInfo.set(name, info);
    return info;
  });
  // Forget deleted policies (a name-keyed map, not a WeakMap: see PolicyInfo.cegpSeen).
  if (cache && cache.policyInfo.size > result.length) {
    const names = new Set(result.map((p) => p.name));
    for (const n of cache.policyInfo.keys()) if (!names.has(n)) cache.policyInfo.delete(n);
  }
  if (cache) cache.policies = { items, result };
  return result;
}

/** Observed CEGPs by policy name (strings already hashed), not by a freshly built `d8.<name>`. */
function observedCEGPsByPolicy(items: readonly CiliumEgressGatewayPolicy[] | undefined, cache: CoreCache | undefined): Map<string, CiliumEgressGatewayPolicy> {
  if (cache?.observedCEGPs && sameItems(cache.observedCEGPs.items, items)) return cache.observedCEGPs.result;
  const result = new Map<string, CiliumEgressGatewayPolicy>();
  for (const c of items ?? []) {
    const n = nameOf(c);
    if (n.startsWith('d8.') && !result.has(n.slice(3))) result.set(n.slice(3), c);
  }
  if (cache) cache.observedCEGPs = { items, result };
  return result;
}

/**
 * `cache`: a long-lived core's memory (see `createCore`); without it every pass starts cold. The
 * result is the same either way (a property test checks it).
 */
export function computeDesired(snapshot: Snapshot, options?: Partial<CoreOptions>, cache?: CoreCache): Desired {
  const opts = resolveOptions(options);
  if (cache) cache.pass++;
  const now = snapshot.now;
  const nowIso = toIso(now);
  const nodes = buildNodeStates(snapshot, cache);

  const { infos, duplicateVIPs, byName, byUid } = gatewaySet(snapshot.gateways, cache);
  const { index, labelled } = nodeIndex(nodes, cache);

  // Instances by owning gateway (uid; by name for uid-less fixtures).
  const owned = new Map<string, InstanceFacts[]>();
  const instanceNames = new Set<string>();
  for (const inst of snapshot.instances ?? []) {
    if (!isObject(inst)) continue;
    const n = nameOf(inst);
    if (n === '') continue;
    instanceNames.add(n);
    const ref = ownerRef(inst);
    if (!ref) continue;
    const g = ref.uid ? byUid.get(ref.uid) : undefined;
    const owner = g ?? (!ref.uid || !byName.get(ref.name)?.uid ? byName.get(ref.name) : undefined);
    if (!owner) continue;
    const list = owned.get(owner.name);
    let f = cache?.instanceFacts.get(inst);
    if (!f) {
      f = instanceFacts(inst);
      cache?.instanceFacts.set(inst, f);
    }
    if (list) list.push(f);
    else owned.set(owner.name, [f]);
  }

  const plans = runElection({ infos, nodes, index, labelled, owned, now, opts, cache });

  const gateways = new Map<string, GatewayDecision>();
  const gatewayStatuses: Desired['gatewayStatuses'] = new Map();
  const gatewayEvents = new Map<string, CoreEvent[]>();
  const moveRequests = new Map<string, CoreEvent>();
  const memberLists: Array<readonly string[]> = [];
  const active = new Map<string, string[]>();
  const membersSeen = new Set<readonly string[]>();
  const instances = new Map<string, EgressGatewayInstance>();
  const views = new Map<string, GatewayView>();
  const metrics: CoreMetrics = { gateways: [], orphanPolicies: [], duplicateVIPs, failovers: [] };

  for (const plan of plans) {
    const g = plan.info;
    // A reused plan whose status needed no write has the same outcome (it did not depend on the time).
    let out = plan.reused ? plan.outcome : undefined;
    if (!out) {
      out = gatewayOutcome(plan, nodes, nowIso, opts.ciliumAgentSource);
      if (cache && out.status === (g.gateway as { status?: unknown }).status) plan.outcome = out;
    }
    gateways.set(g.name, out.decision);
    gatewayStatuses.set(g.name, out.status);
    if (out.events.length > 0) gatewayEvents.set(g.name, out.events);
    if (out.failover) metrics.failovers.push({ gateway: g.name, ...out.failover });
    metrics.gateways.push({
      name: g.name,
      activeNode: plan.active,
      readyNodes: plan.readyNodes,
      totalNodes: plan.candidates.length,
      ready: out.ready,
    });
    // The view policies see; kept while nothing in it changes, so its policies' results can be reused.
    const prevView = cache?.views.get(g.name);
    const message = out.decision.message;
    const view =
      prevView && prevView.info === g && prevView.valid === plan.valid && prevView.active === plan.active && prevView.message === message
        ? prevView
        : { info: g, valid: plan.valid, active: plan.active, message, egressGateway: egressGatewaySpec(g) };
    views.set(g.name, view);

    if (plan.valid) {
      // Membership: Ready, uncordoned nodes matching a valid gateway (the agent DaemonSet selects on
      // it). Gateways sharing a selector share the candidate list: each list is walked once.
      if (!membersSeen.has(plan.candidateNames)) {
        membersSeen.add(plan.candidateNames);
        memberLists.push(plan.candidateNames);
      }
      if (plan.active !== '') {
        let label = cache?.activeLabels.get(g.name);
        if (label === undefined) {
          label = activeForLabel(g.name);
          cache?.activeLabels.set(g.name, label);
        }
        const list = active.get(plan.active);
        if (list) list.push(label);
        else active.set(plan.active, [label]);
      }
    }
    if (plan.move) {
      const done = plan.move.state === 'honoured' && plan.active === plan.move.target;
      if (plan.move.state === 'rejected' || done) {
        moveRequests.set(g.name, {
          regarding: gatewayRef(plan),
          type: done ? 'Normal' : 'Warning',
          reason: done ? 'Moved' : 'MoveRejected',
          note: plan.move.note,
        });
      }
    }
    if (plan.valid && g.mode === MODE_VIP) {
      for (const [node, want] of plan.instanceNodes) {
        const observed = plan.primary.get(node);
        let name: string;
        if (observed) name = observed.name;
        else {
          if (!want.create) continue;
          name = instanceName(g.name, node);
          // The name is still taken (an old instance terminating): create it on a later pass.
          if (instanceNames.has(name)) continue;
        }
        // Remembered per observed instance while it does not depend on the time (assigned-at kept from it).
        const m = observed ? cache?.desiredInstance.get(observed) : undefined;
        if (m && m.info === g && m.node === node && m.name === name) {
          instances.set(name, m.instance);
          continue;
        }
        const inst = desiredInstance(g, node, name, observed, nowIso);
        if (observed && cache && inst.metadata.annotations?.[ASSIGNED_AT_ANNOTATION] !== nowIso) cache.desiredInstance.set(observed, { info: g, node, name, instance: inst });
        instances.set(name, inst);
      }
    }
  }
  if (cache) cache.views = views;
  const nodeLabels = desiredNodeLabels(nodes, memberLists, active, cache);

  const policies = policyList(snapshot.policies, cache);
  const observedCEGPs = observedCEGPsByPolicy(snapshot.cegps, cache);
  const pol = policyResults(policies, views, observedCEGPs, nowIso, cache);
  metrics.orphanPolicies = pol.orphans;

  return {
    gateways,
    nodeLabels,
    instances,
    cegps: pol.cegps,
    gatewayStatuses,
    policyStatuses: pol.statuses,
    metrics,
    gatewayEvents,
    policyEvents: pol.events,
    moveRequests,
  };
}

/**
 * Node → our label keys it must carry. A node's Set is reused from the previous pass while its content
 * is the same (planWrites remembers per (node object, Set) that nothing is to be written), and so is
 * the whole map when no node's set changed.
 */
function desiredNodeLabels(
  nodes: ReadonlyMap<string, NodeState>,
  memberLists: ReadonlyArray<readonly string[]>,
  active: ReadonlyMap<string, string[]>,
  cache: CoreCache | undefined,
): Map<string, Set<string>> {
  // Same node states, same candidate lists and same active nodes: the same labels as last pass.
  const last = cache?.nodeLabelInputs;
  const sameLists = last !== undefined && sameItems(last.memberLists, memberLists);
  if (cache?.nodeLabels && last && last.version === cache.nodesVersion && sameLists && sameActive(last.active, active)) {
    cache.nodeLabelChanges = { from: cache.nodeLabels, to: cache.nodeLabels, names: NO_NAMES };
    return cache.nodeLabels;
  }
  if (cache) cache.nodeLabelInputs = { version: cache.nodesVersion, memberLists, active };
  // The nodes some valid gateway selects (kept while the candidate lists are the same arrays).
  let universe = cache?.memberUniverse && sameItems(cache.memberUniverse.lists, memberLists) ? cache.memberUniverse.names : undefined;
  if (!universe) {
    universe = new Set<string>();
    for (const list of memberLists) for (const n of list) universe.add(n);
    if (cache) cache.memberUniverse = { lists: memberLists, names: universe };
  }
  const selected = universe;
  const isMember = (name: string, st: NodeState): boolean => selected.has(name) && isMemberCandidate(st);
  const fits = (old: ReadonlySet<string> | undefined, member: boolean, keys: readonly string[] | undefined): boolean =>
    old !== undefined && old.size === (member ? 1 : 0) + (keys?.length ?? 0) && (!member || old.has(MEMBER_LABEL)) && (!keys || keys.every((k) => old.has(k)));
  const labelSet = (member: boolean, keys: readonly string[] | undefined): Set<string> => {
    const s = new Set<string>();
    if (member) s.add(MEMBER_LABEL);
    for (const k of keys ?? []) s.add(k);
    return s;
  };
  const prev = cache?.nodeLabels;
  const changes = cache?.nodeChanges;
  if (prev && last && cache && sameLists && changes !== undefined && changes !== 'all' && last.version >= cache.nodesVersion - 1) {
    // Only the nodes whose state changed in this pass and those whose active-for labels moved can differ.
    const touched = new Set<string>();
    for (const c of changes) touched.add(c.now.name);
    for (const [k, v] of active) if (!sameStrings(last.active.get(k), v)) touched.add(k);
    for (const k of last.active.keys()) if (!active.has(k)) touched.add(k);
    let out: Map<string, Set<string>> | undefined;
    for (const name of touched) {
      const st = nodes.get(name);
      const member = st !== undefined && isMember(name, st);
      const keys = st !== undefined ? active.get(name) : undefined;
      const old = prev.get(name);
      if (!member && !keys) {
        if (old) (out ??= new Map(prev)).delete(name);
      } else if (!fits(old, member, keys)) (out ??= new Map(prev)).set(name, labelSet(member, keys));
    }
    cache.nodeLabelChanges = { from: prev, to: out ?? prev, names: touched };
    if (!out) return prev;
    cache.nodeLabels = out;
    return out;
  }
  const out = new Map<string, Set<string>>();
  for (const [name, st] of nodes) {
    const member = isMember(name, st);
    const keys = active.get(name);
    if (!member && !keys) continue;
    const old = prev?.get(name);
    if (old && fits(old, member, keys)) {
      out.set(name, old);
      continue;
    }
    out.set(name, labelSet(member, keys));
  }
  if (cache) {
    cache.nodeLabelChanges = { from: prev, to: out, names: 'all' };
    cache.nodeLabels = out;
  }
  return out;
}

function sameStrings(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameActive(a: ReadonlyMap<string, string[]>, b: ReadonlyMap<string, string[]>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.length !== v.length) return false;
    for (let i = 0; i < v.length; i++) if (v[i] !== w[i]) return false;
  }
  return true;
}

const NO_NAMES: ReadonlySet<string> = new Set();

interface PolicyResults {
  cegps: Map<string, CiliumEgressGatewayPolicy>;
  statuses: Map<string, EgressGatewayPolicyStatus>;
  events: Map<string, CoreEvent[]>;
  orphans: Array<{ policy: string; gateway: string }>;
}

/**
 * Every policy's CEGP, status and events. A policy's outcome depends on its analysis, its gateway's
 * view and its observed CEGP (all immutable, and reused while unchanged) and, only while its status is
 * still to be written, on the time. So with a cache only these policies are recomputed: those whose
 * object or observed CEGP changed, those of a gateway whose view changed, and those whose status is
 * not written yet; every other policy keeps its previous outcome, and a pass where none is recomputed
 * hands back the previous maps. The policies are grouped by gateway for this.
 */
function policyResults(
  policies: readonly PolicyInfo[],
  views: ReadonlyMap<string, GatewayView>,
  observedCEGPs: ReadonlyMap<string, CiliumEgressGatewayPolicy>,
  nowIso: string,
  cache: CoreCache | undefined,
): PolicyResults {
  const prev = cache?.policyState;
  const n = policies.length;
  let dirty: number[] | undefined;
  if (prev && prev.policies.length === n) {
    dirty = [];
    const mark = new Uint8Array(n);
    const add = (i: number): void => {
      if (mark[i] === 0) {
        mark[i] = 1;
        (dirty as number[]).push(i);
      }
    };
    if (prev.policies !== policies) {
      for (let i = 0; i < n; i++) {
        const p = policies[i] as PolicyInfo;
        const q = prev.policies[i] as PolicyInfo;
        if (p === q) continue;
        // A different set of names (or gateways): start over.
        if (p.name !== q.name || p.gatewayName !== q.gatewayName) {
          dirty = undefined;
          break;
        }
        add(i);
      }
    }
    if (dirty && prev.observedMap !== observedCEGPs) {
      for (let i = 0; i < n; i++) if (observedCEGPs.get((policies[i] as PolicyInfo).name) !== prev.observed[i]) add(i);
    }
    if (dirty) {
      for (const [gw, list] of prev.byGateway) if (views.get(gw) !== prev.views.get(gw)) for (const i of list) add(i);
      for (const i of prev.unsettled) add(i);
    }
  }
  if (!dirty || !prev || !cache) {
    // Cold: every policy.
    const observed: Array<CiliumEgressGatewayPolicy | undefined> = [];
    const outcomes: PolicyOutcome[] = [];
    const byGateway = new Map<string, number[]>();
    const unsettled: number[] = [];
    const cegps = new Map<string, CiliumEgressGatewayPolicy>();
    const statuses: PolicyResults['statuses'] = new Map();
    const events = new Map<string, CoreEvent[]>();
    for (let i = 0; i < n; i++) {
      const p = policies[i] as PolicyInfo;
      const obs = observedCEGPs.get(p.name);
      const gw = p.gatewayName !== '' ? views.get(p.gatewayName) : undefined;
      const out = policyOutcome(p, gw, obs, nowIso);
      observed.push(obs);
      outcomes.push(out);
      const list = byGateway.get(p.gatewayName);
      if (list) list.push(i);
      else byGateway.set(p.gatewayName, [i]);
      if (out.status !== (p.policy as { status?: unknown }).status) unsettled.push(i);
      if (out.cegp) cegps.set(obs ? nameOf(obs) : cegpName(p.name), out.cegp);
      statuses.set(p.name, out.status);
      if (out.events.length > 0) events.set(p.name, out.events);
    }
    const orphans = orphanList(policies, outcomes);
    if (cache) {
      cache.policyState = { policies, observedMap: observedCEGPs, observed, views, byGateway, outcomes, unsettled, cegps, statuses, events, orphans };
      cache.policyVersion++;
      cache.policyChanges = { version: cache.policyVersion, cegps: 'all', policies: 'all' };
    }
    return { cegps, statuses, events, orphans };
  }
  if (dirty.length === 0) {
    prev.views = views;
    prev.policies = policies;
    prev.observedMap = observedCEGPs;
    cache.policyChanges = { version: cache.policyVersion, cegps: NO_NAMES, policies: NO_NAMES };
    return { cegps: prev.cegps, statuses: prev.statuses, events: prev.events, orphans: prev.orphans };
  }
  // In place: a long-lived core's Desired is valid until its next pass (see createCore). What changed
  // is recorded, so planWrites re-plans these entries only.
  const { cegps, statuses, events, outcomes, observed } = prev;
  const changedCEGPs = new Set<string>();
  const changedPolicies = new Set<string>();
  const unsettled: number[] = [];
  const recomputed = new Set(dirty);
  for (const i of prev.unsettled) if (!recomputed.has(i)) unsettled.push(i);
  for (const i of dirty) {
    const p = policies[i] as PolicyInfo;
    const obs = observedCEGPs.get(p.name);
    const gw = p.gatewayName !== '' ? views.get(p.gatewayName) : undefined;
    const out = policyOutcome(p, gw, obs, nowIso);
    const oldObs = observed[i];
    const oldKey = oldObs ? nameOf(oldObs) : cegpName(p.name);
    const key = obs ? nameOf(obs) : cegpName(p.name);
    if (oldKey !== key && cegps.delete(oldKey)) changedCEGPs.add(oldKey);
    if (out.cegp) {
      if (cegps.get(key) !== out.cegp) {
        cegps.set(key, out.cegp);
        changedCEGPs.add(key);
      }
    } else if (cegps.delete(key)) changedCEGPs.add(key);
    if (statuses.get(p.name) !== out.status) changedPolicies.add(p.name);
    statuses.set(p.name, out.status);
    const oldEvents = events.get(p.name);
    if (out.events.length > 0) events.set(p.name, out.events);
    else events.delete(p.name);
    if (oldEvents !== events.get(p.name)) changedPolicies.add(p.name);
    outcomes[i] = out;
    observed[i] = obs;
    if (out.status !== (p.policy as { status?: unknown }).status) unsettled.push(i);
  }
  const orphans = orphanList(policies, outcomes);
  cache.policyState = { ...prev, policies, observedMap: observedCEGPs, views, unsettled, orphans };
  if (changedCEGPs.size > 0 || changedPolicies.size > 0) cache.policyVersion++;
  cache.policyChanges = { version: cache.policyVersion, cegps: changedCEGPs, policies: changedPolicies };
  return { cegps, statuses, events, orphans };
}

function orphanList(policies: readonly PolicyInfo[], outcomes: readonly PolicyOutcome[]): Array<{ policy: string; gateway: string }> {
  const out: Array<{ policy: string; gateway: string }> = [];
  for (let i = 0; i < policies.length; i++) {
    if ((outcomes[i] as PolicyOutcome).orphan) out.push({ policy: (policies[i] as PolicyInfo).name, gateway: (policies[i] as PolicyInfo).gatewayName });
  }
  return out;
}
