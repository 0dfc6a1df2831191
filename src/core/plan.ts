// Desired state → the minimal writes, in a safe order (make before break):
//   createInstance/updateInstance → addLabels (Node, then CiliumNode) → applyCEGP → removeLabels
//   → gatewayStatus/policyStatus → clearMoveRequest → deleteInstance → releaseFinalizer → deleteCEGP → events.
// A snapshot that already equals the desired state yields no writes.

import type { EgressGatewayInstance, EgressGatewayStatus } from '../api/types.ts';
import { ACTIVE_FOR_PREFIX, MEMBER_LABEL, MOVE_TO_ANNOTATION } from '../api/names.ts';
import type { CoreEvent, Desired, Snapshot, Write } from './types.ts';
import { heartbeatLive } from './eligibility.ts';
import { instanceFacts, instanceUpToDate, type InstanceFacts } from './instances.ts';
import { isOurCEGP } from './desired.ts';
import { annotationsOf, byString, changedByPosition, forEachByName, isObject, labelsOf, nameOf } from './util.ts';
import { cegpUpToDate, statusEqual } from './compare.ts';
import { sameItems, type CoreCache } from './cache.ts';

/** Keys in name order; computeDesired builds its maps in that order already, so usually no sort. */
function sortedKeys(m: ReadonlyMap<string, unknown>): string[] {
  const keys = [...m.keys()];
  for (let i = 1; i < keys.length; i++) if (byString(keys[i - 1] as string, keys[i] as string) > 0) return keys.sort(byString);
  return keys;
}

const isOurLabel = (k: string): boolean => k === MEMBER_LABEL || k.startsWith(ACTIVE_FOR_PREFIX);

function labelWrites(
  target: 'Node' | 'CiliumNode',
  objects: ReadonlyArray<{ metadata?: unknown }>,
  desired: Desired['nodeLabels'],
  adds: Write[],
  removes: Write[],
  cache: CoreCache | undefined,
): void {
  const plans = cache?.labelPlans[target];
  // Per object and desired Set (both reused while unchanged): the label diff is remembered.
  const replan = (name: string, o: { metadata?: unknown } | undefined, into: { adds: Map<string, Write>; removes: Map<string, Write> }): void => {
    into.adds.delete(name);
    into.removes.delete(name);
    if (o === undefined) return;
    const want = desired.get(name);
    let plan = plans?.get(name);
    if (!plan || plan.object !== o || plan.want !== want) {
      const labels = labelsOf(o);
      const add: string[] = [];
      const remove: string[] = [];
      if (want) for (const k of want) if (labels[k] !== '') add.push(k);
      for (const k in labels) if (isOurLabel(k) && !want?.has(k)) remove.push(k);
      plan = { object: o, want, add: add.length > 0 ? add.sort(byString) : undefined, remove: remove.length > 0 ? remove.sort(byString) : undefined };
      plans?.set(name, plan);
    }
    if (plan.add) into.adds.set(name, { kind: 'addLabels', target, name, keys: [...plan.add] });
    if (plan.remove) into.removes.set(name, { kind: 'removeLabels', target, name, keys: [...plan.remove] });
  };
  const prev = cache?.planLabels.get(target);
  const labelChanges = cache?.nodeLabelChanges;
  const wantKnown =
    prev !== undefined && (prev.want === desired || (labelChanges !== undefined && labelChanges.from === prev.want && labelChanges.to === desired && labelChanges.names !== 'all'));
  const objectChanges = prev && prev.ordered && wantKnown ? (sameItems(prev.objects, objects) ? new Map<string, { metadata?: unknown }>() : changedByPosition(prev.objects, objects)) : undefined;
  let entry = prev;
  if (prev && objectChanges) {
    // Only the nodes whose desired labels or whose object changed (the usual failover: a handful).
    if (prev.want !== desired) for (const name of labelChanges?.names as ReadonlySet<string>) if (!objectChanges.has(name)) replan(name, plans?.get(name)?.object as { metadata?: unknown } | undefined, prev);
    for (const [name, o] of objectChanges) replan(name, o, prev);
    prev.objects = objects;
    prev.want = desired;
  } else {
    const fresh = { objects, want: desired, ordered: false, adds: new Map<string, Write>(), removes: new Map<string, Write>() };
    fresh.ordered = forEachByName(objects, (name, o) => replan(name, o, fresh));
    entry = fresh;
    // Forget objects that are gone (a name-keyed map, not a WeakMap: see PolicyInfo.cegpSeen).
    if (plans && plans.size > objects.length) {
      const names = new Set(objects.map(nameOf));
      for (const n of plans.keys()) if (!names.has(n)) plans.delete(n);
    }
  }
  if (!entry) return;
  cache?.planLabels.set(target, entry);
  adds.push(...inNameOrder(entry.adds));
  removes.push(...inNameOrder(entry.removes));
}

function facts(inst: EgressGatewayInstance, cache: CoreCache | undefined): InstanceFacts {
  let f = cache?.instanceFacts.get(inst);
  if (!f) {
    f = instanceFacts(inst);
    cache?.instanceFacts.set(inst, f);
  }
  return f;
}

function byNameMap<T>(items: readonly T[] | undefined): Map<string, T> {
  const m = new Map<string, T>();
  for (const o of items ?? []) {
    const n = nameOf(o);
    if (n !== '' && !m.has(n)) m.set(n, o);
  }
  return m;
}

/** Values in key order (the pending writes of a kind: few, except on a first pass). */
function inNameOrder<T>(m: ReadonlyMap<string, T>): T[] {
  if (m.size === 0) return [];
  return [...m.keys()].sort(byString).map((k) => m.get(k) as T);
}

/**
 * Can the last plan be brought up to date from this pass's recorded changes? Yes when it was made at
 * this version (nothing changed) or at the one before and the changes are listed by name.
 */
function changeable(planned: number, version: number, names: ReadonlySet<string> | 'all'): boolean {
  return planned === version || (planned === version - 1 && names !== 'all');
}

/** `cache`: a long-lived core's memory (see `createCore`); the writes are the same without it. */
export function planWrites(snapshot: Snapshot, desired: Desired, cache?: CoreCache): Write[] {
  const instanceWrites: Write[] = [];
  const nodeAdds: Write[] = [];
  const cnAdds: Write[] = [];
  const nodeRemoves: Write[] = [];
  const cnRemoves: Write[] = [];
  let applies: Write[] = [];
  const statuses: Write[] = [];
  const clears: Write[] = [];
  const deletes: Write[] = [];
  const releases: Write[] = [];
  let cegpDeletes: Write[] = [];
  const events: CoreEvent[] = [];

  // Instances.
  const observedInstances = byNameMap(snapshot.instances);
  for (const name of sortedKeys(desired.instances)) {
    const want = desired.instances.get(name) as EgressGatewayInstance;
    const have = observedInstances.get(name);
    if (!have) instanceWrites.push({ kind: 'createInstance', object: want });
    else if (cache?.instanceUpToDate.get(have) === want) continue;
    else if (!facts(have, cache).deleting) {
      if (!instanceUpToDate(have, want)) instanceWrites.push({ kind: 'updateInstance', object: want });
      else cache?.instanceUpToDate.set(have, want);
    }
  }
  // Whose agent can withdraw a VIP and remove the finalizer itself: a member node with a live
  // heartbeat. Built only when some instance needs the answer.
  let live: Set<string> | undefined;
  let nodeNames: Set<string> | undefined;
  const states = cache?.nodeStates;
  const agentCanAct = (node: string): boolean => {
    // A long-lived core has this pass's node states (the same heartbeats, the same time).
    if (states) return states.get(node)?.heartbeat === 'live' && desired.nodeLabels.get(node)?.has(MEMBER_LABEL) === true;
    if (!live || !nodeNames) {
      live = new Set<string>();
      for (const hb of snapshot.heartbeats ?? []) if (isObject(hb) && heartbeatLive(hb, snapshot.now)) live.add(hb.node);
      nodeNames = new Set<string>();
      for (const n of snapshot.nodes ?? []) nodeNames.add(nameOf(n));
    }
    return nodeNames.has(node) && live.has(node) && desired.nodeLabels.get(node)?.has(MEMBER_LABEL) === true;
  };
  for (const name of [...observedInstances.keys()].sort(byString)) {
    if (desired.instances.has(name)) continue;
    const inst = observedInstances.get(name) as EgressGatewayInstance;
    const f = facts(inst, cache);
    const uid = inst.metadata?.uid;
    if (!f.deleting) deletes.push(uid ? { kind: 'deleteInstance', name, uid } : { kind: 'deleteInstance', name });
    // A missing object is not an error for the shell (404 → done).
    if (f.hasFinalizer && !agentCanAct(f.node)) releases.push({ kind: 'releaseFinalizer', name });
  }

  // Labels: on the Node and on the CiliumNode (Cilium selects from CiliumNode labels; a dead node's
  // agent never syncs them). A CiliumNode without a Node gets nothing of ours.
  labelWrites('Node', snapshot.nodes ?? [], desired.nodeLabels, nodeAdds, nodeRemoves, cache);
  labelWrites('CiliumNode', snapshot.ciliumNodes ?? [], desired.nodeLabels, cnAdds, cnRemoves, cache);

  // CEGPs. A long-lived core re-plans only the CEGPs whose desired object changed in this pass, as
  // long as the observed ones are the same objects as when it last planned (see policyChanges).
  const cegpList = snapshot.cegps ?? [];
  let observed = cache?.planCEGPs && sameItems(cache.planCEGPs.items, cegpList) ? cache.planCEGPs.result : undefined;
  if (!observed) {
    const byName = byNameMap(cegpList);
    observed = { byName, names: [...byName.keys()].sort(byString) };
    if (cache) cache.planCEGPs = { items: cegpList, result: observed };
  }
  const byName = observed.byName;
  const replanCEGP = (name: string, into: { applies: Map<string, Write>; deletes: Map<string, Write> }): void => {
    const want = desired.cegps.get(name);
    const have = byName.get(name);
    if (want && have !== want && (!have || !cegpUpToDate(have, want))) into.applies.set(name, { kind: 'applyCEGP', object: want });
    else into.applies.delete(name);
    if (!want && have && isOurCEGP(have)) into.deletes.set(name, { kind: 'deleteCEGP', name });
    else into.deletes.delete(name);
  };
  const changes = cache?.policyChanges;
  let pc = cache?.planCEGPWrites;
  if (pc && changes && pc.want === desired.cegps && pc.observed === observed && changeable(pc.version, changes.version, changes.cegps)) {
    if (pc.version !== changes.version) for (const name of changes.cegps as ReadonlySet<string>) replanCEGP(name, pc);
  } else {
    pc = { observed, want: desired.cegps, version: changes?.version ?? 0, applies: new Map(), deletes: new Map() };
    for (const name of desired.cegps.keys()) replanCEGP(name, pc);
    for (const name of observed.names) if (!desired.cegps.has(name)) replanCEGP(name, pc);
  }
  pc.version = changes?.version ?? 0;
  if (cache) cache.planCEGPWrites = pc;
  applies = inNameOrder(pc.applies);
  cegpDeletes = inNameOrder(pc.deletes);

  // Statuses, each with the events that record its transition.
  let gatewaysByName = cache?.planGateways && sameItems(cache.planGateways.items, snapshot.gateways) ? cache.planGateways.result : undefined;
  if (!gatewaysByName) {
    gatewaysByName = byNameMap<{ status?: unknown; metadata?: unknown }>(snapshot.gateways);
    if (cache) cache.planGateways = { items: snapshot.gateways, result: gatewaysByName };
  }
  for (const name of sortedKeys(desired.gatewayStatuses)) {
    const status = desired.gatewayStatuses.get(name) as EgressGatewayStatus;
    if (statusEqual(gatewaysByName.get(name)?.status, status)) continue;
    statuses.push({ kind: 'gatewayStatus', name, status });
    events.push(...(desired.gatewayEvents?.get(name) ?? []));
  }
  const policyList = snapshot.policies ?? [];
  // A long-lived core already has every current policy object by name (its analyses, see
  // computeDesired); a cold one builds the map.
  const analysed = cache?.policyInfo;
  const observedPolicies: { get(name: string): { status?: unknown } | undefined } = analysed
    ? { get: (name) => analysed.get(name)?.policy as { status?: unknown } | undefined }
    : byNameMap<{ status?: unknown }>(policyList);
  const replanPolicy = (name: string, into: Map<string, { write: Write; events: readonly CoreEvent[] }>): void => {
    const status = desired.policyStatuses.get(name);
    if (!status || statusEqual(observedPolicies.get(name)?.status, status)) into.delete(name);
    else into.set(name, { write: { kind: 'policyStatus', name, status }, events: desired.policyEvents?.get(name) ?? [] });
  };
  let pp = cache?.planPolicyStatuses;
  // The observed policies: the same list as when last planned, or one whose changed objects are known.
  const objects = cache?.policyObjectChanges;
  const observedSame = pp !== undefined && sameItems(pp.observed as readonly unknown[], policyList);
  const observedKnown = pp !== undefined && objects !== undefined && objects.to === policyList && objects.from === pp.observed && objects.names !== 'all';
  if (
    pp &&
    changes &&
    pp.want === desired.policyStatuses &&
    pp.events === desired.policyEvents &&
    (observedSame || observedKnown) &&
    changeable(pp.version, changes.version, changes.policies)
  ) {
    if (pp.version !== changes.version) for (const name of changes.policies as ReadonlySet<string>) replanPolicy(name, pp.writes);
    if (!observedSame) for (const name of (objects as { names: ReadonlySet<string> }).names) replanPolicy(name, pp.writes);
    pp.observed = policyList;
  } else {
    pp = { observed: policyList, want: desired.policyStatuses, events: desired.policyEvents, version: 0, writes: new Map() };
    for (const name of desired.policyStatuses.keys()) replanPolicy(name, pp.writes);
  }
  pp.version = changes?.version ?? 0;
  if (cache) cache.planPolicyStatuses = pp;
  for (const w of inNameOrder(pp.writes)) {
    statuses.push(w.write);
    events.push(...w.events);
  }

  // Move requests: only while the annotation is still there.
  for (const name of [...(desired.moveRequests?.keys() ?? [])].sort(byString)) {
    const gw = gatewaysByName.get(name);
    if (!gw || annotationsOf(gw)[MOVE_TO_ANNOTATION] === undefined) continue;
    clears.push({ kind: 'clearMoveRequest', gateway: name });
    events.push(desired.moveRequests?.get(name) as CoreEvent);
  }

  return [
    ...instanceWrites,
    ...nodeAdds,
    ...cnAdds,
    ...applies,
    ...nodeRemoves,
    ...cnRemoves,
    ...statuses,
    ...clears,
    ...deletes,
    ...releases,
    ...cegpDeletes,
    ...events.map((e): Write => ({ kind: 'event', ...e })),
  ];
}
