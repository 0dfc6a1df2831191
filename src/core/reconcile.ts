// One whole pass: snapshot → the plans of every gateway and node → desired state and writes.
//
//   snapshot ─partition─▶ GatewayInputs per gateway name ─planGateway─▶ GatewayPlan ─┐
//                                                              settleElections (load) │
//            NodeInputs per node ◀─nodeLabelInputs (member, active-for)──────────────┘
//            ─planNode─▶ NodePlan ─▶ assembleWrites → Write[]   desiredOf → Desired
//
// The controller does the same incrementally (src/controller/planner.ts): it plans again only the
// gateways and nodes an event touched and reuses the others' plans. No state survives a call here.

import type { CoreOptions, Desired, Snapshot, Write } from './types.ts';
import { DEFAULT_CORE_OPTIONS } from './types.ts';
import type { NodeState } from './eligibility.ts';
import { agentCanAct, assembleWrites, desiredOf, nodeLabelInputs, planInOrder } from './combine.ts';
import type { GatewayPlan } from './gateway.ts';
import { planNode, type NodePlan } from './labels.ts';
import { partition } from './partition.ts';

export function resolveOptions(options?: Partial<CoreOptions>): CoreOptions {
  const o: CoreOptions = { ...DEFAULT_CORE_OPTIONS };
  if (options && typeof options.handoverTimeoutMs === 'number' && Number.isFinite(options.handoverTimeoutMs)) {
    o.handoverTimeoutMs = options.handoverTimeoutMs;
  }
  if (options && typeof options.requireCiliumAgent === 'boolean') o.requireCiliumAgent = options.requireCiliumAgent;
  if (options && typeof options.ciliumAgentSource === 'string') o.ciliumAgentSource = options.ciliumAgentSource;
  if (options?.dataplane === 'linux') o.dataplane = 'linux';
  return o;
}

/** Every node's plan (Nodes and CiliumNodes) from all gateway plans. */
export function planNodes(nodeStates: ReadonlyMap<string, NodeState>, ciliumNodes: ReadonlyMap<string, { metadata?: unknown }>, plans: readonly GatewayPlan[]): Map<string, NodePlan> {
  const { selected, active } = nodeLabelInputs(plans);
  const out = new Map<string, NodePlan>();
  for (const name of new Set([...nodeStates.keys(), ...ciliumNodes.keys()])) {
    out.set(name, planNode({ name, state: nodeStates.get(name), ciliumNode: ciliumNodes.get(name), selected: selected.has(name), active: active.get(name) ?? [] }));
  }
  return out;
}

export function reconcile(snapshot: Snapshot, options?: Partial<CoreOptions>): { desired: Desired; writes: Write[] } {
  const w = partition(snapshot, resolveOptions(options));
  const plans = planInOrder(w.gateways);
  const nodes = planNodes(w.nodeStates, w.ciliumNodes, plans);
  const writes = assembleWrites(plans, nodes.values(), w.leftovers, (n) => agentCanAct(w.nodeStates.get(n), nodes.get(n)));
  return { desired: desiredOf(plans, nodes.values(), w.duplicateVIPs), writes };
}

/** The desired state of a snapshot (`reconcile` without the writes). */
export function computeDesired(snapshot: Snapshot, options?: Partial<CoreOptions>): Desired {
  return reconcile(snapshot, options).desired;
}
