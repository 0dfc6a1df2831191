// `egressgw status` as data: built from listed objects (pure, no I/O), rendered as a table or printed as
// JSON/YAML for scripts. The table is what a person reads during an incident, so every column answers
// "is it working, where, and if not why".

import { MODE_PRIMARY_IP, MODE_VIP } from '../api/names.ts';
import type { Condition, EgressGateway, EgressGatewayPolicy, LabelSelector, PodLike } from '../api/types.ts';
import { podSelected } from '../core/selectors.ts';
import { age, painter, renderTable } from '../term/table.ts';

export interface GatewayRow {
  name: string;
  mode: string;
  /** VIP mode: the VIP; PrimaryIP mode: the interface name. */
  source: string;
  activeNode: string;
  readyNodes: number | null;
  totalNodes: number | null;
  lastFailoverTime: string;
  lastFailoverReason: string;
  ready: string;
  reason: string;
  message: string;
  /** Status is older than the spec (the controller has not caught up, or is not running). */
  stale: boolean;
}

export interface PolicyRow {
  name: string;
  gateway: string;
  destinationCIDRs: string[];
  excludedCIDRs: string[];
  selectedPods: number;
  ready: string;
  reason: string;
  message: string;
}

export interface StatusModel {
  gateways: GatewayRow[];
  policies: PolicyRow[];
}

export interface NamespaceLike {
  metadata: { name: string; labels?: Record<string, string> };
}

const readyCondition = (conds: Condition[] | undefined): Condition | undefined =>
  Array.isArray(conds) ? conds.find((c) => c?.type === 'Ready') : undefined;

export function gatewayRow(g: EgressGateway): GatewayRow {
  const src = g.spec?.sourceIP;
  const mode = src?.mode ?? '';
  const source =
    mode === MODE_VIP ? (src?.virtualIPAddress?.ip ?? '') : mode === MODE_PRIMARY_IP ? (src?.primaryIPFromEgressGatewayNodeInterface?.interfaceName ?? '') : '';
  const st = g.status ?? {};
  const cond = readyCondition(st.conditions);
  return {
    name: g.metadata.name,
    mode,
    source,
    activeNode: st.activeNodeName ?? '',
    readyNodes: typeof st.readyNodes === 'number' ? st.readyNodes : null,
    totalNodes: typeof st.totalNodes === 'number' ? st.totalNodes : null,
    lastFailoverTime: st.lastFailoverTime ?? '',
    lastFailoverReason: st.lastFailoverReason ?? '',
    ready: cond?.status ?? 'Unknown',
    reason: cond?.reason ?? (g.status ? '' : 'NoStatus'),
    message: cond?.message ?? (g.status ? '' : 'the controller has not written a status yet'),
    stale: typeof g.metadata.generation === 'number' && typeof st.observedGeneration === 'number' && st.observedGeneration < g.metadata.generation,
  };
}

/** Pods that egress traffic of a policy applies to: not finished, not on the host network. */
function podCounts(pod: PodLike): boolean {
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return false;
  return (pod.spec as { hostNetwork?: boolean } | undefined)?.hostNetwork !== true;
}

/**
 * Pods matched by any of the policy's selectors, as Cilium matches them: the podSelector sees the pod's
 * labels plus `io.kubernetes.pod.namespace`; a namespaceSelector (ours) must also match the namespace's
 * labels (plus `kubernetes.io/metadata.name`, which the API server sets).
 */
export function countSelectedPods(
  selectors: Array<{ podSelector?: LabelSelector; namespaceSelector?: LabelSelector }> | undefined,
  pods: readonly PodLike[],
  namespaces: ReadonlyMap<string, Record<string, string>>,
): number {
  if (!Array.isArray(selectors) || selectors.length === 0) return 0;
  let n = 0;
  for (const pod of pods) {
    if (!podCounts(pod)) continue;
    const ns = pod.metadata.namespace ?? 'default';
    if (podSelected(selectors, { namespace: ns, labels: pod.metadata.labels, namespaceLabels: namespaces.get(ns) })) n++;
  }
  return n;
}

export function policyRow(p: EgressGatewayPolicy, pods: readonly PodLike[], namespaces: ReadonlyMap<string, Record<string, string>>): PolicyRow {
  const cond = readyCondition(p.status?.conditions);
  return {
    name: p.metadata.name,
    gateway: p.spec?.egressGatewayName ?? '',
    destinationCIDRs: p.spec?.destinationCIDRs ?? [],
    excludedCIDRs: p.spec?.excludedCIDRs ?? [],
    selectedPods: countSelectedPods(p.spec?.selectors, pods, namespaces),
    ready: cond?.status ?? 'Unknown',
    reason: cond?.reason ?? '',
    message: cond?.message ?? '',
  };
}

export function buildStatusModel(input: {
  gateways: readonly EgressGateway[];
  policies: readonly EgressGatewayPolicy[];
  pods: readonly PodLike[];
  namespaces: readonly NamespaceLike[];
}): StatusModel {
  const nsLabels = new Map(input.namespaces.map((n) => [n.metadata.name, n.metadata.labels ?? {}]));
  const byName = <T extends { metadata: { name: string } }>(a: T, b: T): number => (a.metadata.name < b.metadata.name ? -1 : 1);
  return {
    gateways: [...input.gateways].sort(byName).map(gatewayRow),
    policies: [...input.policies].sort(byName).map((p) => policyRow(p, input.pods, nsLabels)),
  };
}

const MODE_SHORT: Record<string, string> = { [MODE_VIP]: 'VIP', [MODE_PRIMARY_IP]: 'PrimaryIP' };

export interface RenderOptions {
  color: boolean;
  /** For "… ago" (ms since the epoch). */
  now: number;
}

/** The one-screen view: gateways, then policies. Pure; colour only when `color` is set. */
export function renderStatus(model: StatusModel, opts: RenderOptions): string {
  const paint = painter(opts.color);
  const state = (ready: string, reason: string): string => {
    const text = reason ? `${ready} ${reason}` : ready;
    return ready === 'True' ? paint('green', text) : ready === 'False' ? paint('red', text) : paint('yellow', text);
  };
  const out: string[] = [];
  if (model.gateways.length === 0) out.push('No EgressGateways.');
  else {
    out.push(paint('bold', 'EGRESS GATEWAYS'));
    out.push(
      renderTable(
        ['NAME', 'MODE', 'VIP/INTERFACE', 'ACTIVE NODE', 'READY NODES', 'LAST FAILOVER', 'READY'],
        model.gateways.map((g) => [
          g.name,
          MODE_SHORT[g.mode] ?? (g.mode || '-'),
          g.source || '-',
          g.activeNode ? g.activeNode : paint('red', '<none>'),
          g.readyNodes === null ? '-' : `${g.readyNodes}/${g.totalNodes ?? '?'}`,
          g.lastFailoverTime ? `${age(g.lastFailoverTime, opts.now)} ago${g.lastFailoverReason ? ` (${g.lastFailoverReason})` : ''}` : '-',
          state(g.ready, g.reason) + (g.stale ? paint('yellow', ' (stale)') : ''),
        ]),
      ),
    );
    // Messages of gateways that are not Ready: the "why" that does not fit in a column.
    const notes = model.gateways.filter((g) => g.ready !== 'True' && g.message);
    for (const g of notes) out.push(paint('dim', `  ${g.name}: ${g.message}`));
  }
  out.push('');
  if (model.policies.length === 0) out.push('No EgressGatewayPolicies.');
  else {
    out.push(paint('bold', 'EGRESS GATEWAY POLICIES'));
    out.push(
      renderTable(
        ['NAME', 'GATEWAY', 'DESTINATIONS', 'PODS', 'READY'],
        model.policies.map((p) => [
          p.name,
          p.gateway || '-',
          (p.destinationCIDRs.join(',') || '-') + (p.excludedCIDRs.length > 0 ? ` except ${p.excludedCIDRs.join(',')}` : ''),
          String(p.selectedPods),
          state(p.ready, p.reason),
        ]),
      ),
    );
    const notes = model.policies.filter((p) => p.ready !== 'True' && p.message);
    for (const p of notes) out.push(paint('dim', `  ${p.name}: ${p.message}`));
  }
  return out.join('\n') + '\n';
}
