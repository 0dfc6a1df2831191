// Desired state → the minimal writes, in a safe order (make before break):
//   createInstance/updateInstance → addLabels (Node, then CiliumNode) → applyCEGP → removeLabels
//   → gatewayStatus/policyStatus → clearMoveRequest → deleteInstance → releaseFinalizer → deleteCEGP → events.
// A snapshot that already equals the desired state yields no writes.

import type { CiliumEgressGatewayPolicy, EgressGatewayInstance, EgressGatewayPolicyStatus, EgressGatewayStatus } from '../api/types.ts';
import { ACTIVE_FOR_PREFIX, MEMBER_LABEL, MOVE_TO_ANNOTATION } from '../api/names.ts';
import type { CoreEvent, Desired, Snapshot, Write } from './types.ts';
import { heartbeatLive } from './eligibility.ts';
import { instanceFacts, instanceUpToDate } from './instances.ts';
import { isOurCEGP } from './desired.ts';
import { annotationsOf, byString, isObject, labelsOf, nameOf } from './util.ts';
import { cegpUpToDate, statusEqual } from './compare.ts';

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
): void {
  const seen = new Set<string>();
  const named: Array<[string, Record<string, string>]> = [];
  for (const o of objects) {
    const n = nameOf(o);
    if (n === '' || seen.has(n)) continue;
    seen.add(n);
    named.push([n, labelsOf(o)]);
  }
  named.sort((a, b) => byString(a[0], b[0]));
  for (const [name, labels] of named) {
    const want = desired.get(name);
    const add: string[] = [];
    const remove: string[] = [];
    if (want) for (const k of want) if (labels[k] !== '') add.push(k);
    for (const k in labels) if (isOurLabel(k) && !want?.has(k)) remove.push(k);
    if (add.length > 0) adds.push({ kind: 'addLabels', target, name, keys: add.sort(byString) });
    if (remove.length > 0) removes.push({ kind: 'removeLabels', target, name, keys: remove.sort(byString) });
  }
}

export function planWrites(snapshot: Snapshot, desired: Desired): Write[] {
  const instanceWrites: Write[] = [];
  const nodeAdds: Write[] = [];
  const cnAdds: Write[] = [];
  const nodeRemoves: Write[] = [];
  const cnRemoves: Write[] = [];
  const applies: Write[] = [];
  const statuses: Write[] = [];
  const clears: Write[] = [];
  const deletes: Write[] = [];
  const releases: Write[] = [];
  const cegpDeletes: Write[] = [];
  const events: CoreEvent[] = [];

  // Instances.
  const observedInstances = new Map<string, EgressGatewayInstance>();
  for (const inst of snapshot.instances ?? []) {
    const n = nameOf(inst);
    if (n !== '' && !observedInstances.has(n)) observedInstances.set(n, inst);
  }
  for (const name of sortedKeys(desired.instances)) {
    const want = desired.instances.get(name) as EgressGatewayInstance;
    const have = observedInstances.get(name);
    if (!have) instanceWrites.push({ kind: 'createInstance', object: want });
    else if (!instanceFacts(have).deleting && !instanceUpToDate(have, want)) instanceWrites.push({ kind: 'updateInstance', object: want });
  }
  // Whose agent can withdraw a VIP and remove the finalizer itself: a member node with a live heartbeat.
  const live = new Set<string>();
  for (const hb of snapshot.heartbeats ?? []) if (isObject(hb) && heartbeatLive(hb, snapshot.now)) live.add(hb.node);
  const nodeNames = new Set<string>();
  for (const n of snapshot.nodes ?? []) nodeNames.add(nameOf(n));
  const agentCanAct = (node: string): boolean => nodeNames.has(node) && live.has(node) && desired.nodeLabels.get(node)?.has(MEMBER_LABEL) === true;
  for (const name of [...observedInstances.keys()].sort(byString)) {
    if (desired.instances.has(name)) continue;
    const inst = observedInstances.get(name) as EgressGatewayInstance;
    const f = instanceFacts(inst);
    const uid = inst.metadata?.uid;
    if (!f.deleting) deletes.push(uid ? { kind: 'deleteInstance', name, uid } : { kind: 'deleteInstance', name });
    // A missing object is not an error for the shell (404 → done).
    if (f.hasFinalizer && !agentCanAct(f.node)) releases.push({ kind: 'releaseFinalizer', name });
  }

  // Labels: on the Node and on the CiliumNode (Cilium selects from CiliumNode labels; a dead node's
  // agent never syncs them). A CiliumNode without a Node gets nothing of ours.
  labelWrites('Node', snapshot.nodes ?? [], desired.nodeLabels, nodeAdds, nodeRemoves);
  labelWrites('CiliumNode', snapshot.ciliumNodes ?? [], desired.nodeLabels, cnAdds, cnRemoves);

  // CEGPs.
  const observedCEGPs = new Map<string, CiliumEgressGatewayPolicy>();
  for (const c of snapshot.cegps ?? []) {
    const n = nameOf(c);
    if (n !== '' && !observedCEGPs.has(n)) observedCEGPs.set(n, c);
  }
  for (const name of sortedKeys(desired.cegps)) {
    const want = desired.cegps.get(name) as CiliumEgressGatewayPolicy;
    const have = observedCEGPs.get(name);
    if (have !== want && (!have || !cegpUpToDate(have, want))) applies.push({ kind: 'applyCEGP', object: want });
  }
  for (const name of [...observedCEGPs.keys()].sort(byString)) {
    const c = observedCEGPs.get(name) as CiliumEgressGatewayPolicy;
    if (!desired.cegps.has(name) && isOurCEGP(c)) cegpDeletes.push({ kind: 'deleteCEGP', name });
  }

  // Statuses, each with the events that record its transition.
  const gatewaysByName = new Map<string, { status?: unknown; metadata?: unknown }>();
  for (const g of snapshot.gateways ?? []) if (nameOf(g) !== '' && !gatewaysByName.has(nameOf(g))) gatewaysByName.set(nameOf(g), g);
  for (const name of sortedKeys(desired.gatewayStatuses)) {
    const status = desired.gatewayStatuses.get(name) as EgressGatewayStatus;
    if (statusEqual(gatewaysByName.get(name)?.status, status)) continue;
    statuses.push({ kind: 'gatewayStatus', name, status });
    events.push(...(desired.gatewayEvents?.get(name) ?? []));
  }
  const policiesByName = new Map<string, { status?: unknown }>();
  for (const p of snapshot.policies ?? []) if (nameOf(p) !== '' && !policiesByName.has(nameOf(p))) policiesByName.set(nameOf(p), p);
  for (const name of sortedKeys(desired.policyStatuses)) {
    const status = desired.policyStatuses.get(name) as EgressGatewayPolicyStatus;
    if (statusEqual(policiesByName.get(name)?.status, status)) continue;
    statuses.push({ kind: 'policyStatus', name, status });
    events.push(...(desired.policyEvents?.get(name) ?? []));
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
