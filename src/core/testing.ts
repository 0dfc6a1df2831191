// Test helpers for the pure core (fixtures, and a pure `applyWrites` that plays the shell's part).
// Not used by production code.

import type {
  CiliumNodeLike,
  Condition,
  EgressGateway,
  EgressGatewayInstance,
  EgressGatewayPolicy,
  NodeLike,
  PodLike,
} from '../api/types.ts';
import { API_VERSION, HANDOVER_TO_ANNOTATION, KIND_GATEWAY, KIND_POLICY, MODE_PRIMARY_IP, MODE_VIP, MOVE_TO_ANNOTATION } from '../api/names.ts';
import type { Heartbeat, Snapshot, UplinkState, Write } from './types.ts';
import { heartbeatLive } from './eligibility.ts';
import { nameOf } from './util.ts';
import { instanceAnnotations, instanceFacts } from './instances.ts';

export const NOW = Date.parse('2026-01-01T00:00:00.000Z');
export const T0 = '2025-12-01T00:00:00Z';

export interface NodeOpts {
  /** true/false: a Ready condition with that status; 'none': no Ready condition at all. */
  ready?: boolean | 'none';
  unschedulable?: boolean;
}

export function node(name: string, labels: Record<string, string> = {}, o: NodeOpts = {}): NodeLike {
  const ready = o.ready ?? true;
  const n: NodeLike = { metadata: { name, uid: `uid-node-${name}`, labels: { ...labels } } };
  if (o.unschedulable) n.spec = { unschedulable: true };
  if (ready !== 'none') n.status = { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'KubeletReady' : 'KubeletNotReady' }] };
  return n;
}

export function ciliumNode(name: string, labels: Record<string, string> = {}): CiliumNodeLike {
  return { metadata: { name, labels: { ...labels } } };
}

export function pod(name: string, nodeName: string, o: { ready?: boolean; deleting?: boolean } = {}): PodLike {
  const p: PodLike = { metadata: { name, namespace: 'd8-cni-cilium' }, spec: { nodeName }, status: { conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] } };
  if (o.deleting) p.metadata.deletionTimestamp = T0;
  return p;
}

export function heartbeat(nodeName: string, o: { live?: boolean; uplinks?: Record<string, UplinkState> } = {}): Heartbeat {
  const hb: Heartbeat = { node: nodeName, observedAt: o.live === false ? NOW - 10_000 : NOW - 100, durationMs: 2000 };
  if (o.uplinks) hb.uplinks = o.uplinks;
  return hb;
}

export interface GatewayOpts {
  uid?: string;
  created?: string;
  generation?: number;
  interfaces?: string[];
  moveTo?: string;
}

export function vipGateway(name: string, ip: string, nodeSelector: Record<string, string> | undefined, o: GatewayOpts = {}): EgressGateway {
  const g: EgressGateway = {
    apiVersion: API_VERSION,
    kind: KIND_GATEWAY,
    metadata: { name, uid: o.uid ?? `uid-gw-${name}`, generation: o.generation ?? 1, creationTimestamp: o.created ?? T0 },
    spec: { sourceIP: { mode: MODE_VIP, virtualIPAddress: { ip, interfaces: o.interfaces ?? [] } } },
  };
  if (nodeSelector) (g.spec as NonNullable<EgressGateway['spec']>).nodeSelector = nodeSelector;
  if (o.moveTo !== undefined) g.metadata.annotations = { [MOVE_TO_ANNOTATION]: o.moveTo };
  return g;
}

export function primaryGateway(name: string, interfaceName: string, nodeSelector: Record<string, string> | undefined, o: GatewayOpts = {}): EgressGateway {
  const g: EgressGateway = {
    apiVersion: API_VERSION,
    kind: KIND_GATEWAY,
    metadata: { name, uid: o.uid ?? `uid-gw-${name}`, generation: o.generation ?? 1, creationTimestamp: o.created ?? T0 },
    spec: { sourceIP: { mode: MODE_PRIMARY_IP, primaryIPFromEgressGatewayNodeInterface: { interfaceName } } },
  };
  if (nodeSelector) (g.spec as NonNullable<EgressGateway['spec']>).nodeSelector = nodeSelector;
  if (o.moveTo !== undefined) g.metadata.annotations = { [MOVE_TO_ANNOTATION]: o.moveTo };
  return g;
}

export function policy(
  name: string,
  gateway: string,
  o: { podLabels?: Record<string, string>; cidrs?: string[]; excluded?: string[]; generation?: number } = {},
): EgressGatewayPolicy {
  const p: EgressGatewayPolicy = {
    apiVersion: API_VERSION,
    kind: KIND_POLICY,
    metadata: { name, uid: `uid-pol-${name}`, generation: o.generation ?? 1 },
    spec: { egressGatewayName: gateway, destinationCIDRs: o.cidrs ?? ['0.0.0.0/0'], selectors: [{ podSelector: { matchLabels: o.podLabels ?? { app: name } } }] },
  };
  if (o.excluded) (p.spec as NonNullable<EgressGatewayPolicy['spec']>).excludedCIDRs = o.excluded;
  return p;
}

export function emptySnapshot(now = NOW): Snapshot {
  return { now, nodes: [], ciliumNodes: [], ciliumAgentPods: [], agentPods: [], heartbeats: [], gateways: [], policies: [], instances: [], cegps: [] };
}

/**
 * A cluster where every listed node has a CiliumNode with the same labels; `healthy` nodes also get a
 * Ready cilium-agent pod, a Ready agent pod and a live heartbeat.
 */
export function cluster(
  nodes: Array<{ name: string; labels?: Record<string, string>; healthy?: boolean } & NodeOpts>,
  rest: Partial<Snapshot> = {},
): Snapshot {
  const s = emptySnapshot();
  const ns: NodeLike[] = [];
  const cns: CiliumNodeLike[] = [];
  const cp: PodLike[] = [];
  const ap: PodLike[] = [];
  const hbs: Heartbeat[] = [];
  for (const n of nodes) {
    ns.push(node(n.name, n.labels ?? {}, n));
    cns.push(ciliumNode(n.name, n.labels ?? {}));
    if (n.healthy !== false) {
      cp.push(pod(`cilium-${n.name}`, n.name));
      ap.push(pod(`agent-${n.name}`, n.name));
      hbs.push(heartbeat(n.name));
    }
  }
  return { ...s, nodes: ns, ciliumNodes: cns, ciliumAgentPods: cp, agentPods: ap, heartbeats: hbs, ...rest };
}

function setLabels<T extends { metadata: { labels?: Record<string, string> } }>(list: readonly T[], name: string, f: (l: Record<string, string>) => void): T[] {
  return list.map((o) => {
    if (nameOf(o) !== name) return o;
    const c = structuredClone(o);
    c.metadata.labels ??= {};
    f(c.metadata.labels);
    return c;
  });
}

/**
 * What the shell does with the writes, on a copy of the snapshot: labels, instances (deletion honours
 * finalizers), CEGPs, statuses, move requests. Events change nothing.
 */
export function applyWrites(snapshot: Snapshot, writes: readonly Write[]): Snapshot {
  let s: Snapshot = { ...snapshot };
  const nowIso = new Date(s.now).toISOString();
  for (const w of writes) {
    switch (w.kind) {
      case 'addLabels':
      case 'removeLabels': {
        const f = (l: Record<string, string>): void => {
          for (const k of w.keys) {
            if (w.kind === 'addLabels') l[k] = '';
            else delete l[k];
          }
        };
        if (w.target === 'Node') s = { ...s, nodes: setLabels(s.nodes, w.name, f) };
        else s = { ...s, ciliumNodes: setLabels(s.ciliumNodes, w.name, f) };
        break;
      }
      case 'createInstance': {
        if (s.instances.some((i) => nameOf(i) === nameOf(w.object))) throw new Error(`create: ${nameOf(w.object)} exists`);
        const o = structuredClone(w.object);
        o.metadata.generation = 1;
        o.metadata.uid = `uid-inst-${o.metadata.name}`;
        o.metadata.creationTimestamp = nowIso;
        s = { ...s, instances: [...s.instances, o] };
        break;
      }
      case 'updateInstance': {
        s = {
          ...s,
          instances: s.instances.map((i) => {
            if (nameOf(i) !== nameOf(w.object)) return i;
            const o = structuredClone(w.object);
            const specChanged = JSON.stringify(i.spec) !== JSON.stringify(o.spec);
            // As the shell writes it (controller/apply.ts).
            const annotations = instanceAnnotations(i.metadata.annotations, o.metadata.annotations);
            o.metadata = { ...i.metadata, ...o.metadata, annotations, generation: (i.metadata.generation ?? 1) + (specChanged ? 1 : 0) };
            if (i.status) o.status = structuredClone(i.status);
            return o;
          }),
        };
        break;
      }
      case 'deleteInstance':
        s = {
          ...s,
          instances: s.instances.flatMap((i) => {
            if (nameOf(i) !== w.name) return [i];
            if ((i.metadata.finalizers ?? []).length === 0) return [];
            const o = structuredClone(i);
            o.metadata.deletionTimestamp ??= nowIso;
            return [o];
          }),
        };
        break;
      case 'releaseFinalizer':
        s = {
          ...s,
          instances: s.instances.flatMap((i) => {
            if (nameOf(i) !== w.name) return [i];
            if (i.metadata.deletionTimestamp) return [];
            const o = structuredClone(i);
            o.metadata.finalizers = [];
            return [o];
          }),
        };
        break;
      case 'applyCEGP':
        s = { ...s, cegps: [...s.cegps.filter((c) => nameOf(c) !== nameOf(w.object)), structuredClone(w.object)] };
        break;
      case 'deleteCEGP':
        s = { ...s, cegps: s.cegps.filter((c) => nameOf(c) !== w.name) };
        break;
      case 'applyDataplane':
        s = { ...s, dataplanes: [...(s.dataplanes ?? []).filter((o) => nameOf(o) !== nameOf(w.object)), structuredClone(w.object)] };
        break;
      case 'deleteDataplane':
        s = { ...s, dataplanes: (s.dataplanes ?? []).filter((o) => nameOf(o) !== w.name) };
        break;
      case 'gatewayStatus':
        s = { ...s, gateways: s.gateways.map((g) => (nameOf(g) === w.name ? { ...g, status: structuredClone(w.status) } : g)) };
        break;
      case 'policyStatus':
        s = { ...s, policies: s.policies.map((p) => (nameOf(p) === w.name ? { ...p, status: structuredClone(w.status) } : p)) };
        break;
      case 'clearMoveRequest':
        s = {
          ...s,
          gateways: s.gateways.map((g) => {
            if (nameOf(g) !== w.gateway) return g;
            const c = structuredClone(g);
            if (c.metadata.annotations) delete c.metadata.annotations[MOVE_TO_ANNOTATION];
            return c;
          }),
        };
        break;
      case 'event':
        break;
    }
  }
  return s;
}

const readyCondition = (status: 'True' | 'False', generation: number | undefined): Condition => ({
  type: 'Ready',
  status,
  reason: status === 'True' ? 'AnnouncingSucceed' : 'AnnouncingFailed',
  message: status === 'True' ? 'Announcing 1 Virtual IPs' : 'Announcing Virtual IPs failed',
  lastTransitionTime: T0,
  ...(generation !== undefined ? { observedGeneration: generation } : {}),
});

/** The nodes whose agent's heartbeat is live at the snapshot's time: the agents that act. */
function liveNodes(snapshot: Snapshot): Set<string> {
  return new Set(snapshot.heartbeats.filter((h) => heartbeatLive(h, snapshot.now)).map((h) => h.node));
}

/**
 * What live agents do: confirm their non-deleting instances (Ready=True for the current generation) and
 * remove the finalizer of their deleting ones. `only`: restrict to these nodes. An instance with the
 * handover mark (HANDOVER_TO_ANNOTATION) is confirmed only if it already was (the agent keeps a VIP it
 * holds but does not take one): otherwise it reports Ready=False, as the agent does (HandingOver).
 */
export function agentsAct(snapshot: Snapshot, only?: readonly string[]): Snapshot {
  const live = liveNodes(snapshot);
  const acts = (n: string | undefined): boolean => n !== undefined && live.has(n) && (!only || only.includes(n));
  return {
    ...snapshot,
    instances: snapshot.instances.flatMap((i) => {
      if (!acts(i.spec?.nodeName)) return [i];
      if (i.metadata.deletionTimestamp) return [];
      const o = structuredClone(i);
      const holds = instanceFacts(i).ready;
      const taken = holds || i.metadata.annotations?.[HANDOVER_TO_ANNOTATION] === undefined;
      o.status = { observedGeneration: o.metadata.generation, conditions: [readyCondition(taken ? 'True' : 'False', o.metadata.generation)] };
      return [o];
    }),
  };
}

/** The live agents release their nodes' deleting instances (withdraw, remove the finalizer), nothing else. */
export function agentsRelease(snapshot: Snapshot): Snapshot {
  const live = liveNodes(snapshot);
  return { ...snapshot, instances: snapshot.instances.filter((i) => !(i.metadata.deletionTimestamp && live.has(i.spec?.nodeName ?? ''))) };
}

export function instanceWithStatus(i: EgressGatewayInstance, status: 'True' | 'False'): EgressGatewayInstance {
  const o = structuredClone(i);
  o.status = { observedGeneration: o.metadata.generation, conditions: [readyCondition(status, o.metadata.generation)] };
  return o;
}

/** Replace the named objects of one list with updated copies. */
export function update<T extends { metadata: { name: string } }>(list: readonly T[], name: string, f: (o: T) => void): T[] {
  return list.map((o) => {
    if (nameOf(o) !== name) return o;
    const c = structuredClone(o);
    f(c);
    return c;
  });
}

/** Labels of a node (Node or CiliumNode) by name. */
export function labelsOfNode(list: ReadonlyArray<{ metadata: { name: string; labels?: Record<string, string> } }>, name: string): Record<string, string> {
  return list.find((n) => n.metadata.name === name)?.metadata.labels ?? {};
}

/** Run reconcile/apply until nothing is written (or `max` passes), letting agents act between passes. */
export function settleWith(
  reconcileFn: (s: Snapshot) => { writes: Write[] },
  snapshot: Snapshot,
  o: { agents?: boolean; max?: number } = {},
): Snapshot {
  let s = snapshot;
  for (let i = 0; i < (o.max ?? 10); i++) {
    const { writes } = reconcileFn(s);
    s = applyWrites(s, writes);
    if (o.agents !== false) s = agentsAct(s);
    if (writes.length === 0) return s;
  }
  return s;
}
