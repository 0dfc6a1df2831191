// A whole snapshot cut into the core's units of work: the inputs of every gateway name and every
// node. This is the whole-recompute path (`reconcile`, the CLI, tests); the controller keeps the same
// inputs up to date from watch events instead (src/controller/planner.ts), and a property test holds
// the two to the same result.

import type { CiliumEgressGatewayPolicy, CiliumNodeLike, EgressGateway, EgressGatewayDataplane, EgressGatewayPolicy } from '../api/types.ts';
import { ACTIVE_FOR_PREFIX, cegpName } from '../api/names.ts';
import type { CoreOptions, Snapshot } from './types.ts';
import { buildNodeStates, type NodeState } from './eligibility.ts';
import { gatewayRefs, type GatewayInputs } from './gateway.ts';
import { gatewayOfInstanceName, instanceFacts, ownerOf, type InstanceFacts } from './instances.ts';
import type { Leftovers } from './combine.ts';
import { NodeLabelIndex } from './selectors.ts';
import { analyseGateway, analysePolicy, nodeAddressOwners, withDuplicateVIPs, type DuplicateVIP, type GatewayInfo, type PolicyInfo } from './validate.ts';
import { byString, forEachByName, isObject } from './util.ts';

export interface Partition {
  nodeStates: Map<string, NodeState>;
  ciliumNodes: Map<string, CiliumNodeLike>;
  /** One per gateway name (gateways, and names policies refer to), in name order. */
  gateways: GatewayInputs[];
  leftovers: Leftovers;
  duplicateVIPs: DuplicateVIP[];
}

/** The first object of each name, by name. */
function byName<T>(items: readonly T[] | undefined): Map<string, T> {
  const m = new Map<string, T>();
  forEachByName(items ?? [], (n, o) => m.set(n, o));
  return m;
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/** Which nodes carry active-for-<G> (Node labels: that is where Cilium's agent syncs from), by gateway. */
function labelledNodes(nodes: ReadonlyMap<string, NodeState>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const st of [...nodes.values()].sort((a, b) => byString(a.name, b.name))) {
    for (const k in st.labels) if (k.startsWith(ACTIVE_FOR_PREFIX)) push(out, k.slice(ACTIVE_FOR_PREFIX.length), st.name);
  }
  return out;
}

/** Instances by owning gateway and by the gateway their name belongs to; the unowned are leftovers. */
function instancesByGateway(snapshot: Snapshot, gateways: ReadonlyMap<string, GatewayInfo>) {
  const byUid = new Map<string, string>();
  for (const g of gateways.values()) if (g.uid !== '') byUid.set(g.uid, g.name);
  const owned = new Map<string, InstanceFacts[]>();
  const taken = new Map<string, Set<string>>();
  const unowned: InstanceFacts[] = [];
  for (const inst of byName(snapshot.instances?.filter(isObject)).values()) {
    const f = instanceFacts(inst);
    const owner = ownerOf(inst, (uid) => byUid.get(uid), (name) => gateways.get(name)?.uid);
    if (owner !== undefined) push(owned, owner, f);
    else unowned.push(f);
    const g = gatewayOfInstanceName(f.name);
    if (g !== undefined) taken.set(g, (taken.get(g) ?? new Set()).add(f.name));
  }
  return { owned, taken, unowned };
}

/** The observed CEGP (`d8.<policy>`) of each policy that has one, by policy name. */
export function observedCEGPs(policies: readonly PolicyInfo[], cegps: ReadonlyMap<string, CiliumEgressGatewayPolicy>): Map<string, CiliumEgressGatewayPolicy> {
  const out = new Map<string, CiliumEgressGatewayPolicy>();
  for (const p of policies) {
    const c = cegps.get(cegpName(p.name));
    if (c) out.set(p.name, c);
  }
  return out;
}

export function partition(snapshot: Snapshot, options: CoreOptions): Partition {
  const nodeStates = buildNodeStates(snapshot);
  const { infos, duplicateVIPs } = withDuplicateVIPs([...byName<EgressGateway>(snapshot.gateways).values()].map(analyseGateway), nodeAddressOwners(snapshot.nodes));
  const gateways = new Map(infos.map((g) => [g.name, g]));
  const policies = new Map<string, PolicyInfo[]>();
  for (const p of byName<EgressGatewayPolicy>(snapshot.policies).values()) {
    const info = analysePolicy(p);
    push(policies, info.gatewayName, info);
  }
  const cegps = byName<CiliumEgressGatewayPolicy>(snapshot.cegps);
  const linux = options.dataplane === 'linux';
  const dataplanes = linux ? byName<EgressGatewayDataplane>(snapshot.dataplanes) : new Map<string, EgressGatewayDataplane>();
  const { owned, taken, unowned } = instancesByGateway(snapshot, gateways);
  const labelled = labelledNodes(nodeStates);
  const index = new NodeLabelIndex(new Map([...nodeStates].map(([n, st]) => [n, st.labels])));
  const names = [...new Set([...gateways.keys(), ...policies.keys()])].sort(byString);
  const inputs = names.map((name): GatewayInputs => {
    const g = gateways.get(name);
    const candidateNames = g?.selectorValid ? index.match(g.selector) : [];
    const instances = owned.get(name) ?? [];
    const own = policies.get(name) ?? [];
    const refs = new Map<string, NodeState>();
    for (const n of gatewayRefs(g, labelled.get(name) ?? [], instances)) {
      const st = nodeStates.get(n);
      if (st) refs.set(n, st);
    }
    return {
      name,
      now: snapshot.now,
      options,
      gateway: g,
      candidateNames,
      candidates: candidateNames.map((n) => nodeStates.get(n) as NodeState),
      refs,
      labelled: labelled.get(name) ?? [],
      instances,
      takenNames: taken.get(name) ?? new Set(),
      policies: own,
      cegps: observedCEGPs(own, cegps),
      ...(dataplanes.has(name) ? { dataplane: dataplanes.get(name) } : {}),
    };
  });
  const policyNames = new Set([...policies.values()].flat().map((p) => p.name));
  // The Linux data plane writes no CEGPs, and so deletes none either.
  const leftoverCEGPs = linux ? [] : [...cegps].filter(([n]) => n.startsWith('d8.') && !policyNames.has(n.slice(3))).map(([, c]) => c);
  const planned = new Set(names);
  const leftoverDataplanes = [...dataplanes].filter(([n]) => !planned.has(n)).map(([, o]) => o);
  return { nodeStates, ciliumNodes: byName(snapshot.ciliumNodes), gateways: inputs, leftovers: { instances: unowned, cegps: leftoverCEGPs, dataplanes: leftoverDataplanes }, duplicateVIPs };
}
