// What couples the gateways' plans, and the pass's result assembled from them:
//  - settleElections: the least-loaded election counts the other gateways' choices;
//  - nodeLabelInputs / agentCanAct: a node's labels depend on every gateway (membership, active-for);
//  - assembleWrites: every plan's pending writes, in the one safe order (make before break), and the
//    Linux data plane's objects with tunnel ids unique across gateways (dataplaneWrites);
//  - desiredOf / metricsOf: the Desired view and the metrics of a pass.
// (Duplicate VIPs couple gateways too; that rule applies before planning: withDuplicateVIPs.)

import type { CiliumEgressGatewayPolicy, EgressGatewayDataplane } from '../api/types.ts';
import { MEMBER_LABEL, activeForLabel } from '../api/names.ts';
import type { CoreEvent, CoreMetrics, Desired, Write } from './types.ts';
import type { NodeState } from './eligibility.ts';
import { planGateway, type GatewayInputs, type GatewayPlan } from './gateway.ts';
import type { InstanceFacts } from './instances.ts';
import type { NodePlan } from './labels.ts';
import { isOurCEGP } from './render.ts';
import type { DuplicateVIP } from './validate.ts';
import { dataplaneUpToDate, settleTunnelIDs, validTunnelID, withTunnelID } from './dataplane.ts';
import { byString, nameOf } from './util.ts';

/**
 * Objects no gateway name claims: instances without an owner, CEGPs of policies that do not exist (none
 * with the Linux data plane, which writes no CEGPs), dataplane objects of names no gateway has.
 */
export interface Leftovers {
  instances: readonly InstanceFacts[];
  cegps: readonly CiliumEgressGatewayPolicy[];
  dataplanes?: readonly EgressGatewayDataplane[];
}

/**
 * The Linux data plane's objects as the pass wants them: each plan's rendered object with its tunnel id
 * settled across all gateways (a proposal taken by an object already on the wire moves on). Name order.
 */
export function settledDataplanes(plans: Iterable<GatewayPlan>): EgressGatewayDataplane[] {
  const rendered = [...plans].flatMap((p) => (p.rendered.linux ? [{ p, o: p.rendered.linux }] : []));
  if (rendered.length === 0) return [];
  const ids = settleTunnelIDs(rendered.map(({ p, o }) => ({ name: p.name, id: o.spec!.tunnelID!, observed: validTunnelID(p.inputs.dataplane?.spec?.tunnelID) })));
  return rendered.map(({ p, o }) => (ids.get(p.name) === o.spec!.tunnelID ? o : withTunnelID(o, ids.get(p.name)!)));
}

/** Applies for the objects that differ from the observed ones, deletes for ours no gateway wants. */
function dataplaneWrites(plans: readonly GatewayPlan[], leftovers: Leftovers): { applies: Write[]; deletes: Write[] } {
  const observed = new Map(plans.map((p) => [p.name, p.inputs.dataplane]));
  const applies: Write[] = [];
  for (const o of settledDataplanes(plans)) {
    const have = observed.get(o.metadata.name);
    if (!have || !dataplaneUpToDate(have, o)) applies.push({ kind: 'applyDataplane', object: o });
  }
  const deletes: Write[] = [];
  for (const p of plans) if (!p.rendered.linux && p.inputs.dataplane) deletes.push({ kind: 'deleteDataplane', name: p.name });
  for (const o of leftovers.dataplanes ?? []) deletes.push({ kind: 'deleteDataplane', name: o.metadata.name });
  deletes.sort(byKey((w) => (w.kind === 'deleteDataplane' ? w.name : '')));
  return { applies, deletes };
}

function bump(load: Map<string, number>, node: string): void {
  load.set(node, (load.get(node) ?? 0) + 1);
}

/**
 * The election's load counts (design §4.2): every gateway's kept node counts, then the gateways that
 * elect do so in name order, each counting the nodes elected before it. A plan elected with other
 * counts than these (for the nodes it chose from) is planned again with these. `plans`: in name order.
 * Plans that keep a node do not depend on the counts, so at most the electing ones are planned again.
 */
export function settleElections(plans: readonly GatewayPlan[], replan: (inputs: GatewayInputs, load: ReadonlyMap<string, number>) => GatewayPlan = planGateway): GatewayPlan[] {
  if (!plans.some((p) => p.election?.byLoad)) return plans as GatewayPlan[];
  const load = new Map<string, number>();
  for (const p of plans) if (p.election?.keep) bump(load, p.election.keep);
  const out = plans.slice();
  for (let i = 0; i < out.length; i++) {
    const b = (out[i] as GatewayPlan).election?.byLoad;
    if (!b) continue;
    if (!b.pool.every((n, j) => (load.get(n) ?? 0) === b.loads[j])) out[i] = replan((out[i] as GatewayPlan).inputs, load);
    const target = (out[i] as GatewayPlan).election?.target;
    if (target) bump(load, target);
  }
  return out;
}

/** The gateway plans in name order, each elected with the counts of the plans before it, then settled. */
export function planInOrder(inputs: readonly GatewayInputs[]): GatewayPlan[] {
  const load = new Map<string, number>();
  const plans = inputs.map((i) => {
    const p = planGateway(i, load);
    if (p.election?.target) bump(load, p.election.target);
    return p;
  });
  return settleElections(plans);
}

/** A valid gateway's contribution to the node labels: its candidates (member) and its active node. */
export function nodeContribution(p: GatewayPlan): { members: readonly string[]; active: string } | undefined {
  return p.election?.valid ? { members: p.inputs.candidateNames, active: p.election.active } : undefined;
}

/** Every plan's node-label contributions: the nodes some valid gateway selects, and node → active-for keys. */
export function nodeLabelInputs(plans: readonly GatewayPlan[]): { selected: Set<string>; active: Map<string, string[]> } {
  const selected = new Set<string>();
  const active = new Map<string, string[]>();
  for (const p of plans) {
    const c = nodeContribution(p);
    if (!c) continue;
    for (const n of c.members) selected.add(n);
    if (c.active !== '') active.set(c.active, [...(active.get(c.active) ?? []), activeForLabel(p.name)]);
  }
  return { selected, active };
}

/** Can the node's own agent withdraw a VIP and remove an instance's finalizer? A member node with a live heartbeat. */
export function agentCanAct(state: NodeState | undefined, plan: NodePlan | undefined): boolean {
  return state?.heartbeat === 'live' && plan?.labels.includes(MEMBER_LABEL) === true;
}

const byKey = <T>(key: (x: T) => string) => (a: T, b: T): number => byString(key(a), key(b));
const instanceKey = (w: Write): string => (w.kind === 'createInstance' || w.kind === 'updateInstance' ? w.object.metadata.name : '');
const cegpKey = (w: Write): string => (w.kind === 'applyCEGP' ? nameOf(w.object) : w.kind === 'deleteCEGP' ? w.name : '');
const labelKey = (w: Write): string => (w.kind === 'addLabels' || w.kind === 'removeLabels' ? w.name : '');

/**
 * The pass's writes, in the order the shell executes them (make before break):
 *   createInstance/updateInstance → addLabels (Node, then CiliumNode) → applyCEGP → applyDataplane
 *   → removeLabels → gatewayStatus/policyStatus → clearMoveRequest → deleteInstance → releaseFinalizer
 *   → deleteCEGP → deleteDataplane → events.
 * Each kind in name order. `canAct`: see agentCanAct.
 */
export function assembleWrites(plans: readonly GatewayPlan[], nodes: Iterable<NodePlan>, leftovers: Leftovers, canAct: (node: string) => boolean): Write[] {
  const instances: Write[] = [];
  const applies: Write[] = [];
  const gwStatuses: Array<{ name: string; write: Write; events: readonly CoreEvent[] }> = [];
  const polStatuses: Array<{ name: string; write: Write; events: readonly CoreEvent[] }> = [];
  const clears: Array<{ name: string; write: Write; event: CoreEvent }> = [];
  const stale: InstanceFacts[] = [...leftovers.instances];
  const cegpDeletes: Write[] = [];
  for (const c of leftovers.cegps) if (isOurCEGP(c)) cegpDeletes.push({ kind: 'deleteCEGP', name: nameOf(c) });
  for (const p of plans) {
    const w = p.writes;
    instances.push(...w.instances);
    applies.push(...w.applyCEGPs);
    if (w.status) gwStatuses.push({ name: p.name, ...w.status });
    polStatuses.push(...w.policyStatuses);
    if (w.clearMove) clears.push({ name: p.name, ...w.clearMove });
    stale.push(...w.stale);
    cegpDeletes.push(...w.deleteCEGPs);
  }
  const label = { Node: { add: [] as Write[], remove: [] as Write[] }, CiliumNode: { add: [] as Write[], remove: [] as Write[] } };
  const sortLabel = (w: Write): void => {
    if (w.kind === 'addLabels') label[w.target].add.push(w);
    else if (w.kind === 'removeLabels') label[w.target].remove.push(w);
  };
  for (const n of nodes) {
    if (n.writes.node.length > 0) n.writes.node.forEach(sortLabel);
    if (n.writes.ciliumNode.length > 0) n.writes.ciliumNode.forEach(sortLabel);
  }
  const named = byKey((x: { name: string }) => x.name);
  stale.sort(named);
  gwStatuses.sort(named);
  polStatuses.sort(named);
  clears.sort(named);
  const deletes: Write[] = [];
  const releases: Write[] = [];
  for (const f of stale) {
    const uid = f.instance.metadata?.uid;
    if (!f.deleting) deletes.push(uid ? { kind: 'deleteInstance', name: f.name, uid } : { kind: 'deleteInstance', name: f.name });
    // A missing object is not an error for the shell (404 → done).
    if (f.hasFinalizer && !canAct(f.node)) releases.push({ kind: 'releaseFinalizer', name: f.name });
  }
  const events: CoreEvent[] = [...gwStatuses.flatMap((s) => s.events), ...polStatuses.flatMap((s) => s.events), ...clears.map((c) => c.event)];
  const byLabel = byKey(labelKey);
  const dataplane = dataplaneWrites(plans, leftovers);
  return [
    ...instances.sort(byKey(instanceKey)),
    ...label.Node.add.sort(byLabel),
    ...label.CiliumNode.add.sort(byLabel),
    ...applies.sort(byKey(cegpKey)),
    ...dataplane.applies,
    ...label.Node.remove.sort(byLabel),
    ...label.CiliumNode.remove.sort(byLabel),
    ...gwStatuses.map((s) => s.write),
    ...polStatuses.map((s) => s.write),
    ...clears.map((c) => c.write),
    ...deletes,
    ...releases,
    ...cegpDeletes.sort(byKey(cegpKey)),
    ...dataplane.deletes,
    ...events.map((e): Write => ({ kind: 'event', ...e })),
  ];
}

/** The pass's metrics. `plans`: in name order. */
export function metricsOf(plans: readonly GatewayPlan[], duplicateVIPs: readonly DuplicateVIP[]): CoreMetrics {
  const m: CoreMetrics = { gateways: [], orphanPolicies: [], duplicateVIPs: [...duplicateVIPs], failovers: [] };
  for (const p of plans) {
    const out = p.outcome;
    if (out) {
      m.gateways.push(out.metric);
      if (out.failover) m.failovers.push({ gateway: p.name, ...out.failover });
      continue;
    }
    // Only a name no gateway has has orphan policies.
    p.inputs.policies.forEach((pol, i) => {
      if (p.policies[i]?.orphan) m.orphanPolicies.push({ policy: pol.name, gateway: pol.gatewayName });
    });
  }
  m.orphanPolicies.sort(byKey((o) => o.policy));
  return m;
}

/** The Desired view of a pass's plans (`plans` in name order). */
export function desiredOf(plans: readonly GatewayPlan[], nodes: Iterable<NodePlan>, duplicateVIPs: readonly DuplicateVIP[]): Desired {
  const d: Required<Desired> = {
    gateways: new Map(),
    nodeLabels: new Map(),
    instances: new Map(),
    cegps: new Map(),
    gatewayStatuses: new Map(),
    policyStatuses: new Map(),
    metrics: metricsOf(plans, duplicateVIPs),
    gatewayEvents: new Map(),
    policyEvents: new Map(),
    moveRequests: new Map(),
    dataplanes: new Map(),
  };
  for (const o of settledDataplanes(plans)) d.dataplanes.set(o.metadata.name, o);
  for (const p of plans) {
    if (p.outcome) {
      d.gateways.set(p.name, p.outcome.decision);
      d.gatewayStatuses.set(p.name, p.outcome.status);
      if (p.outcome.events.length > 0) d.gatewayEvents.set(p.name, p.outcome.events);
    }
    if (p.moveRequest) d.moveRequests.set(p.name, p.moveRequest);
    for (const [k, v] of p.instances) d.instances.set(k, v);
    for (const [k, v] of p.rendered.cilium) d.cegps.set(k, v);
    p.inputs.policies.forEach((pol, i) => {
      const out = p.policies[i];
      if (!out) return;
      d.policyStatuses.set(pol.name, out.status);
      if (out.events.length > 0) d.policyEvents.set(pol.name, out.events);
    });
  }
  for (const n of nodes) if (n.labels.length > 0) d.nodeLabels.set(n.name, new Set(n.labels));
  return d;
}
