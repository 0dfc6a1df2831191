// What `egressgw plan` prints: the core's decisions and writes as plain data (YAML/JSON-ready). Pure.

import type { Desired, GatewayDecision, Snapshot, Write } from '../core/types.ts';
import { reasonText } from '../core/eligibility.ts';

export interface NodeReport {
  node: string;
  eligible: boolean;
  /** Why the node is out, machine-readable then human-readable. */
  reasons?: string[];
  explanation?: string;
}

export interface GatewayReport {
  name: string;
  mode: string;
  phase: string;
  ready: boolean;
  reason: string;
  message: string;
  readyNodes: string;
  election: {
    /** Active node observed before this pass (label, else live instance). */
    observedActive: string;
    /** The node the election chose (sticky); '' when none. */
    elected: string;
    /** The node carrying active-for-<gateway> after this pass. */
    active: string;
    moveTarget?: string;
  };
  nodes: NodeReport[];
}

export interface PlanReport {
  now: string;
  input: Record<string, number>;
  gateways: GatewayReport[];
  writes: Write[];
  desired: {
    nodeLabels: Record<string, string[]>;
    instances: unknown[];
    ciliumEgressGatewayPolicies: unknown[];
    gatewayStatuses: Record<string, unknown>;
    policyStatuses: Record<string, unknown>;
  };
}

function gatewayReport(d: GatewayDecision): GatewayReport {
  const election: GatewayReport['election'] = { observedActive: d.observedActive, elected: d.target, active: d.active };
  if (d.moveTarget) election.moveTarget = d.moveTarget;
  return {
    name: d.name,
    mode: d.mode,
    phase: d.phase,
    ready: d.phase === 'Active',
    reason: d.reason,
    message: d.message,
    readyNodes: `${d.readyNodes}/${d.totalNodes}`,
    election,
    nodes: d.candidates.map((c) =>
      c.eligible
        ? { node: c.node, eligible: true }
        : { node: c.node, eligible: false, reasons: [...c.reasons], explanation: c.reasons.map(reasonText).join(', ') },
    ),
  };
}

const sortedRecord = <V>(m: ReadonlyMap<string, V>, f: (v: V) => unknown = (v) => v): Record<string, unknown> =>
  Object.fromEntries([...m.keys()].sort().map((k) => [k, f(m.get(k) as V)]));

export function planReport(snapshot: Snapshot, desired: Desired, writes: Write[]): PlanReport {
  return {
    now: new Date(snapshot.now).toISOString(),
    input: {
      nodes: snapshot.nodes.length,
      ciliumNodes: snapshot.ciliumNodes.length,
      ciliumAgentPods: snapshot.ciliumAgentPods.length,
      agentPods: snapshot.agentPods.length,
      heartbeats: snapshot.heartbeats.length,
      gateways: snapshot.gateways.length,
      policies: snapshot.policies.length,
      instances: snapshot.instances.length,
      ciliumEgressGatewayPolicies: snapshot.cegps.length,
    },
    gateways: [...desired.gateways.keys()].sort().map((k) => gatewayReport(desired.gateways.get(k)!)),
    writes,
    desired: {
      nodeLabels: sortedRecord(desired.nodeLabels, (s) => [...s].sort()) as Record<string, string[]>,
      instances: [...desired.instances.keys()].sort().map((k) => desired.instances.get(k)),
      ciliumEgressGatewayPolicies: [...desired.cegps.keys()].sort().map((k) => desired.cegps.get(k)),
      gatewayStatuses: sortedRecord(desired.gatewayStatuses),
      policyStatuses: sortedRecord(desired.policyStatuses),
    },
  };
}
