// Observed snapshot → desired state. One pass, no I/O, no clock: time is `snapshot.now`.

import type { CiliumEgressGatewayPolicy, EgressGatewayInstance, EgressGatewayPolicy } from '../api/types.ts';
import { ACTIVE_FOR_PREFIX, MEMBER_LABEL, MODE_VIP, OWNED_LABELS, activeForLabel, cegpName } from '../api/names.ts';
import type { CoreEvent, CoreMetrics, CoreOptions, Desired, GatewayDecision, Snapshot } from './types.ts';
import { DEFAULT_CORE_OPTIONS } from './types.ts';
import { buildNodeStates, isMemberCandidate, type NodeState } from './eligibility.ts';
import { runElection } from './election.ts';
import { desiredInstance, instanceFacts, ownerRef, type InstanceFacts } from './instances.ts';
import { egressGatewaySpec, policyOutcome, type GatewayView } from './render.ts';
import { NodeLabelIndex } from './selectors.ts';
import { gatewayOutcome, gatewayRef } from './status.ts';
import { analyseGateway, analysePolicy, markDuplicateVIPs, markInvalid, type GatewayInfo, type PolicyInfo } from './validate.ts';
import { byString, instanceName, isObject, labelsOf, nameOf, toIso } from './util.ts';

export function resolveOptions(options?: Partial<CoreOptions>): CoreOptions {
  const o: CoreOptions = { ...DEFAULT_CORE_OPTIONS };
  if (options && typeof options.handoverTimeoutMs === 'number' && Number.isFinite(options.handoverTimeoutMs)) {
    o.handoverTimeoutMs = options.handoverTimeoutMs;
  }
  if (options && typeof options.requireCiliumAgent === 'boolean') o.requireCiliumAgent = options.requireCiliumAgent;
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

/** Objects with a usable name, in name order, first occurrence of a duplicated name only. */
function uniqueSorted<T>(items: readonly T[] | undefined, name: (t: T) => string): Array<{ name: string; item: T }> {
  const list: Array<{ name: string; item: T; i: number }> = [];
  (items ?? []).forEach((item, i) => {
    const n = name(item);
    if (n !== '') list.push({ name: n, item, i });
  });
  list.sort((a, b) => byString(a.name, b.name) || a.i - b.i);
  const out: Array<{ name: string; item: T }> = [];
  for (const x of list) if (out.length === 0 || (out[out.length - 1] as { name: string }).name !== x.name) out.push(x);
  return out;
}

/**
 * Policy analysis depends on the object only; informer objects are immutable (a change is a new
 * object), so the result is remembered per object: 10,000 policies are not re-validated every pass.
 */
const policyMemo = new WeakMap<object, PolicyInfo>();
function analysePolicyMemo(p: EgressGatewayPolicy): PolicyInfo {
  let info = policyMemo.get(p);
  if (!info) {
    info = analysePolicy(p);
    policyMemo.set(p, info);
  }
  return info;
}

export function computeDesired(snapshot: Snapshot, options?: Partial<CoreOptions>): Desired {
  const opts = resolveOptions(options);
  const now = snapshot.now;
  const nowIso = toIso(now);
  const nodes = buildNodeStates(snapshot);

  // Gateways: validate, then the duplicate-VIP rule (needs all of them).
  const infos: GatewayInfo[] = uniqueSorted(snapshot.gateways, nameOf).map((x) => analyseGateway(x.item));
  for (const g of infos) markInvalid(g);
  const duplicateVIPs = markDuplicateVIPs(infos);
  const byName = new Map(infos.map((g) => [g.name, g]));
  const byUid = new Map<string, GatewayInfo>();
  for (const g of infos) if (g.uid !== '') byUid.set(g.uid, g);

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
  const index = new NodeLabelIndex(labelMap);

  // Instances by owning gateway (uid; by name for uid-less fixtures).
  const owned = new Map<string, InstanceFacts[]>();
  for (const inst of snapshot.instances ?? []) {
    if (!isObject(inst) || nameOf(inst) === '') continue;
    const ref = ownerRef(inst);
    if (!ref) continue;
    const g = ref.uid ? byUid.get(ref.uid) : undefined;
    const owner = g ?? (!ref.uid || !byName.get(ref.name)?.uid ? byName.get(ref.name) : undefined);
    if (!owner) continue;
    const list = owned.get(owner.name);
    const f = instanceFacts(inst);
    if (list) list.push(f);
    else owned.set(owner.name, [f]);
  }

  const plans = runElection({ infos, nodes, index, labelled, owned, now, opts });

  const gateways = new Map<string, GatewayDecision>();
  const gatewayStatuses: Desired['gatewayStatuses'] = new Map();
  const gatewayEvents = new Map<string, CoreEvent[]>();
  const moveRequests = new Map<string, CoreEvent>();
  const nodeLabels = new Map<string, Set<string>>();
  const instances = new Map<string, EgressGatewayInstance>();
  const views = new Map<string, GatewayView>();
  const metrics: CoreMetrics = { gateways: [], orphanPolicies: [], duplicateVIPs, failovers: [] };
  const addLabel = (node: string, key: string): void => {
    const s = nodeLabels.get(node);
    if (s) s.add(key);
    else nodeLabels.set(node, new Set([key]));
  };
  const instanceNames = new Set<string>();
  for (const inst of snapshot.instances ?? []) {
    const n = nameOf(inst);
    if (n !== '') instanceNames.add(n);
  }

  for (const plan of plans) {
    const g = plan.info;
    const out = gatewayOutcome(plan, nodes, nowIso);
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
    views.set(g.name, { info: g, valid: plan.valid, active: plan.active, message: out.decision.message, egressGateway: egressGatewaySpec(g) });

    if (plan.valid) {
      // Membership: Ready, uncordoned nodes matching a valid gateway (the agent DaemonSet selects on it).
      for (const v of plan.candidates) {
        if (isMemberCandidate(nodes.get(v.node) as NodeState)) addLabel(v.node, MEMBER_LABEL);
      }
      if (plan.active !== '') addLabel(plan.active, activeForLabel(g.name));
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
        instances.set(name, desiredInstance(g, node, name, observed, nowIso));
      }
    }
  }

  // Policies.
  const cegps = new Map<string, CiliumEgressGatewayPolicy>();
  const policyStatuses: Desired['policyStatuses'] = new Map();
  const policyEvents = new Map<string, CoreEvent[]>();
  // Indexed by policy name (strings already hashed), not by a freshly built `d8.<name>`.
  const observedCEGPs = new Map<string, CiliumEgressGatewayPolicy>();
  for (const c of snapshot.cegps ?? []) {
    const n = nameOf(c);
    if (n.startsWith('d8.') && !observedCEGPs.has(n.slice(3))) observedCEGPs.set(n.slice(3), c);
  }
  const policies: PolicyInfo[] = uniqueSorted(snapshot.policies, nameOf).map((x) => analysePolicyMemo(x.item));
  for (const p of policies) {
    const observed = observedCEGPs.get(p.name);
    const cname = observed ? nameOf(observed) : cegpName(p.name);
    const gw = p.gatewayName !== '' ? views.get(p.gatewayName) : undefined;
    const out = policyOutcome(p, gw, observed, nowIso);
    if (out.cegp) cegps.set(cname, out.cegp);
    policyStatuses.set(p.name, out.status);
    if (out.events.length > 0) policyEvents.set(p.name, out.events);
    if (out.orphan) metrics.orphanPolicies.push({ policy: p.name, gateway: p.gatewayName });
  }

  return { gateways, nodeLabels, instances, cegps, gatewayStatuses, policyStatuses, metrics, gatewayEvents, policyEvents, moveRequests };
}
