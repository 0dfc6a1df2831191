// The chaos suite's model of what the operator wants (pure), and how it becomes API objects.
//
// The world is a fixed cast, changed between and during rounds: gateway nodes (a pool label, and one
// impairment at a time: cordoned, NotReady, or cilium-agent not Ready), seven gateways (four VIP-mode
// with two possible VIPs each, three PrimaryIP-mode) selecting all nodes, a pool or one node, and 24
// policies pointing at them. Decisions come from the round's generator only — never from what the
// cluster looks like — so a seed replays the same sequence of changes.
//
// With the Linux data plane (`--dataplane linux`) the world also holds Pods: a fixed cast of pod slots
// (each a pod network namespace with its address, on its node), present or deleted, labelled with one
// of the policies' `app` values or with one no policy selects. Without it there are none, and the plans
// are exactly what they were (pod changes come from a generator of their own: round.ts).

import { MODE_PRIMARY_IP, MODE_VIP } from '../../src/api/names.ts';
import { GATEWAY_NODE_LABEL } from '../../src/testenv/seed.ts';
import type { Rng } from './rng.ts';

export const POOL_LABEL = 'chaos.egressgw.lab/pool';
export const HOSTNAME_LABEL = 'kubernetes.io/hostname';

export type Selector = 'all' | 'poolA' | 'poolB' | `node:${string}`;
export type Impairment = 'none' | 'cordoned' | 'notReady' | 'ciliumNotReady';
export type Pool = 'a' | 'b' | 'none';

export interface GatewaySpec {
  name: string;
  mode: 'vip' | 'primary';
  selector: Selector;
  /** VIP mode. */
  vip?: string;
  /** VIP mode: ['eth0'], or undefined (the interface holding the route to the VIP). */
  interfaces?: string[];
}

export interface PolicySpec {
  name: string;
  gateway: string;
  cidrs: string[];
  excluded: string[];
  app: string;
}

export interface NodeSpec {
  name: string;
  pool: Pool;
  impairment: Impairment;
}

/** A Pod of the Linux data plane's world: its slot (name, node, address) and its state. */
export interface PodSpec {
  name: string;
  node: string;
  ip: string;
  /** The `app` label ('' none). */
  app: string;
  present: boolean;
}

export type PodSlot = Pick<PodSpec, 'name' | 'node' | 'ip'>;

export interface World {
  nodes: Map<string, NodeSpec>;
  /** Present gateways (a deleted one is absent until re-created). */
  gateways: Map<string, GatewaySpec>;
  policies: Map<string, PolicySpec>;
  /** Pods by name (Linux data plane only; empty otherwise). */
  pods: Map<string, PodSpec>;
}

/** The Kubernetes namespace of the world's pods. */
export const POD_NAMESPACE = 'chaos-apps';
/** Pod labels: the policies select app-0…app-4; `web` and no label are selected by none. */
export const POD_APPS = ['app-0', 'app-1', 'app-2', 'app-3', 'app-4', 'web', ''];

export const VIP_GATEWAYS = ['gw-v0', 'gw-v1', 'gw-v2', 'gw-v3'];
export const PRIMARY_GATEWAYS = ['gw-p0', 'gw-p1', 'gw-p2'];
export const GATEWAYS = [...VIP_GATEWAYS, ...PRIMARY_GATEWAYS];
export const POLICY_COUNT = 24;
export const policyName = (i: number): string => `pol-${String(i).padStart(2, '0')}`;

/** The two VIPs a VIP-mode gateway may have (TEST-NET, on the gateway LAN 198.18.0.0/24; one gateway each). */
export function vipsOf(gateway: string): [string, string] {
  const i = VIP_GATEWAYS.indexOf(gateway);
  if (i < 0) throw new Error(`${gateway} is not a VIP gateway`);
  return [`198.18.0.${100 + i}`, `198.18.0.${120 + i}`];
}

/** Every VIP any gateway of the suite may have, with its gateway. */
export function allVips(): Map<string, string> {
  const out = new Map<string, string>();
  for (const g of VIP_GATEWAYS) for (const v of vipsOf(g)) out.set(v, g);
  return out;
}

const CIDR_SETS: ReadonlyArray<{ cidrs: string[]; excluded: string[] }> = [
  { cidrs: ['203.0.113.0/24'], excluded: [] },
  { cidrs: ['198.51.100.0/24', '192.0.2.0/24'], excluded: [] },
  { cidrs: ['203.0.113.0/25'], excluded: ['203.0.113.64/26'] },
  { cidrs: ['192.0.2.128/25'], excluded: [] },
];

export function initialWorld(nodeNames: readonly string[], podSlots: readonly PodSlot[] = []): World {
  const nodes = new Map<string, NodeSpec>();
  nodeNames.forEach((name, i) => nodes.set(name, { name, pool: i < nodeNames.length / 2 ? 'a' : 'b', impairment: 'none' }));
  const gateways = new Map<string, GatewaySpec>();
  const selectors: Selector[] = ['all', 'poolA', 'poolB', `node:${nodeNames.at(-1)}`];
  VIP_GATEWAYS.forEach((name, i) => gateways.set(name, { name, mode: 'vip', selector: selectors[i] as Selector, vip: vipsOf(name)[0], ...(i % 2 === 0 ? { interfaces: ['eth0'] } : {}) }));
  PRIMARY_GATEWAYS.forEach((name, i) => gateways.set(name, { name, mode: 'primary', selector: (['all', 'poolA', 'poolB'] as const)[i]! }));
  const policies = new Map<string, PolicySpec>();
  for (let i = 0; i < POLICY_COUNT; i++) {
    const set = CIDR_SETS[i % CIDR_SETS.length]!;
    policies.set(policyName(i), { name: policyName(i), gateway: GATEWAYS[i % GATEWAYS.length]!, cidrs: set.cidrs, excluded: set.excluded, app: `app-${i % 5}` });
  }
  // Every third pod is selected by no policy; the others by the five policies of their app.
  const apps = ['app-0', 'app-1', 'web', 'app-2', 'app-3', '', 'app-4'];
  const pods = new Map(podSlots.map((p, i) => [p.name, { ...p, app: apps[i % apps.length]!, present: true }]));
  return { nodes, gateways, policies, pods };
}

export function cloneWorld(w: World): World {
  return {
    nodes: new Map([...w.nodes].map(([k, v]) => [k, { ...v }])),
    gateways: new Map([...w.gateways].map(([k, v]) => [k, { ...v, ...(v.interfaces ? { interfaces: [...v.interfaces] } : {}) }])),
    policies: new Map([...w.policies].map(([k, v]) => [k, { ...v, cidrs: [...v.cidrs], excluded: [...v.excluded] }])),
    pods: new Map([...w.pods].map(([k, v]) => [k, { ...v }])),
  };
}

export type Mutation =
  | { kind: 'gatewaySelector'; name: string; selector: Selector }
  | { kind: 'gatewayVip'; name: string; vip: string }
  | { kind: 'gatewayInterfaces'; name: string; interfaces: string[] | undefined }
  | { kind: 'gatewayDelete'; name: string }
  | { kind: 'gatewayCreate'; spec: GatewaySpec }
  | { kind: 'policyGateway'; name: string; gateway: string }
  | { kind: 'policyCidrs'; name: string; cidrs: string[]; excluded: string[] }
  | { kind: 'policyDelete'; name: string }
  | { kind: 'policyCreate'; spec: PolicySpec }
  | { kind: 'nodePool'; node: string; pool: Pool }
  | { kind: 'nodeHealth'; node: string; from: Impairment; to: Impairment }
  | { kind: 'podLabel'; name: string; app: string }
  | { kind: 'podDelete'; name: string }
  | { kind: 'podCreate'; name: string; app: string };

export function describeMutation(m: Mutation): string {
  switch (m.kind) {
    case 'gatewaySelector':
      return `gateway ${m.name} selects ${m.selector}`;
    case 'gatewayVip':
      return `gateway ${m.name} VIP ${m.vip}`;
    case 'gatewayInterfaces':
      return `gateway ${m.name} interfaces ${m.interfaces ? m.interfaces.join(',') : '(route)'}`;
    case 'gatewayDelete':
      return `delete gateway ${m.name}`;
    case 'gatewayCreate':
      return `create gateway ${m.spec.name} (${m.spec.mode}, ${m.spec.selector}${m.spec.vip ? `, ${m.spec.vip}` : ''})`;
    case 'policyGateway':
      return `policy ${m.name} → ${m.gateway}`;
    case 'policyCidrs':
      return `policy ${m.name} CIDRs ${m.cidrs.join(',')}${m.excluded.length ? ` except ${m.excluded.join(',')}` : ''}`;
    case 'policyDelete':
      return `delete policy ${m.name}`;
    case 'policyCreate':
      return `create policy ${m.spec.name} → ${m.spec.gateway}`;
    case 'nodePool':
      return `node ${m.node} pool ${m.pool}`;
    case 'nodeHealth':
      return `node ${m.node} ${m.from} → ${m.to}`;
    case 'podLabel':
      return `pod ${m.name} app ${m.app || '(none)'}`;
    case 'podDelete':
      return `delete pod ${m.name}`;
    case 'podCreate':
      return `create pod ${m.name} (app ${m.app || '(none)'})`;
  }
}

/** The world after `m` (a new world; `w` is not changed). */
export function applyToWorld(w: World, m: Mutation): World {
  const out = cloneWorld(w);
  const gw = (name: string) => out.gateways.get(name);
  const pol = (name: string) => out.policies.get(name);
  switch (m.kind) {
    case 'gatewaySelector':
      if (gw(m.name)) gw(m.name)!.selector = m.selector;
      break;
    case 'gatewayVip':
      if (gw(m.name)) gw(m.name)!.vip = m.vip;
      break;
    case 'gatewayInterfaces': {
      const g = gw(m.name);
      if (g) {
        if (m.interfaces) g.interfaces = [...m.interfaces];
        else delete g.interfaces;
      }
      break;
    }
    case 'gatewayDelete':
      out.gateways.delete(m.name);
      break;
    case 'gatewayCreate':
      out.gateways.set(m.spec.name, { ...m.spec });
      break;
    case 'policyGateway':
      if (pol(m.name)) pol(m.name)!.gateway = m.gateway;
      break;
    case 'policyCidrs':
      if (pol(m.name)) Object.assign(pol(m.name)!, { cidrs: [...m.cidrs], excluded: [...m.excluded] });
      break;
    case 'policyDelete':
      out.policies.delete(m.name);
      break;
    case 'policyCreate':
      out.policies.set(m.spec.name, { ...m.spec });
      break;
    case 'nodePool':
      out.nodes.get(m.node)!.pool = m.pool;
      break;
    case 'nodeHealth':
      out.nodes.get(m.node)!.impairment = m.to;
      break;
    case 'podLabel':
      if (out.pods.get(m.name)?.present) out.pods.get(m.name)!.app = m.app;
      break;
    case 'podDelete':
      if (out.pods.has(m.name)) out.pods.get(m.name)!.present = false;
      break;
    case 'podCreate':
      if (out.pods.has(m.name)) Object.assign(out.pods.get(m.name)!, { present: true, app: m.app });
      break;
  }
  return out;
}

/** Caps that keep the world interesting: enough nodes, gateways and policies left to fail over between. */
const MAX_IMPAIRED = 2;
const MAX_DELETED_GATEWAYS = 2;
const MAX_DELETED_POLICIES = 4;

function randomSelector(rng: Rng, nodes: readonly string[]): Selector {
  return rng.pick<Selector>(['all', 'all', 'poolA', 'poolB', `node:${rng.pick(nodes)}`]);
}

function randomGateway(rng: Rng, name: string, nodes: readonly string[]): GatewaySpec {
  const selector = randomSelector(rng, nodes);
  if (!VIP_GATEWAYS.includes(name)) return { name, mode: 'primary', selector };
  return { name, mode: 'vip', selector, vip: rng.pick(vipsOf(name)), ...(rng.chance(0.5) ? { interfaces: ['eth0'] } : {}) };
}

/** One random change of `w` that respects the caps. */
export function randomMutation(w: World, rng: Rng): Mutation {
  const nodes = [...w.nodes.keys()];
  const present = [...w.gateways.keys()];
  const deletedGws = GATEWAYS.filter((g) => !w.gateways.has(g));
  const policyNames = Array.from({ length: POLICY_COUNT }, (_, i) => policyName(i));
  const deletedPols = policyNames.filter((p) => !w.policies.has(p));
  for (;;) {
    const kind = rng.pick(['gateway', 'gateway', 'policy', 'policy', 'node', 'node'] as const);
    if (kind === 'gateway') {
      if (deletedGws.length > 0 && (deletedGws.length >= MAX_DELETED_GATEWAYS || rng.chance(0.4))) {
        return { kind: 'gatewayCreate', spec: randomGateway(rng, rng.pick(deletedGws), nodes) };
      }
      const name = rng.pick(present);
      const g = w.gateways.get(name)!;
      const options = ['selector', 'selector', 'delete', ...(g.mode === 'vip' ? ['vip', 'interfaces'] : [])];
      const what = rng.pick(options);
      if (what === 'delete') return { kind: 'gatewayDelete', name };
      if (what === 'vip') return { kind: 'gatewayVip', name, vip: vipsOf(name).find((v) => v !== g.vip)! };
      if (what === 'interfaces') return { kind: 'gatewayInterfaces', name, interfaces: g.interfaces ? undefined : ['eth0'] };
      return { kind: 'gatewaySelector', name, selector: randomSelector(rng, nodes) };
    }
    if (kind === 'policy') {
      if (deletedPols.length > 0 && (deletedPols.length >= MAX_DELETED_POLICIES || rng.chance(0.3))) {
        const name = rng.pick(deletedPols);
        const set = rng.pick(CIDR_SETS);
        return { kind: 'policyCreate', spec: { name, gateway: rng.pick(GATEWAYS), cidrs: set.cidrs, excluded: set.excluded, app: `app-${rng.int(0, 4)}` } };
      }
      const name = rng.pick([...w.policies.keys()]);
      const what = rng.pick(['gateway', 'gateway', 'cidrs', 'delete']);
      if (what === 'delete') return { kind: 'policyDelete', name };
      if (what === 'cidrs') {
        const set = rng.pick(CIDR_SETS);
        return { kind: 'policyCidrs', name, cidrs: set.cidrs, excluded: set.excluded };
      }
      return { kind: 'policyGateway', name, gateway: rng.pick(GATEWAYS) };
    }
    const node = rng.pick(nodes);
    const n = w.nodes.get(node)!;
    if (rng.chance(0.4)) return { kind: 'nodePool', node, pool: rng.pick((['a', 'b', 'none'] as const).filter((p) => p !== n.pool)) };
    if (n.impairment !== 'none') return { kind: 'nodeHealth', node, from: n.impairment, to: 'none' };
    const impaired = [...w.nodes.values()].filter((x) => x.impairment !== 'none').length;
    if (impaired >= MAX_IMPAIRED) continue;
    return { kind: 'nodeHealth', node, from: 'none', to: rng.pick(['cordoned', 'notReady', 'ciliumNotReady'] as const) };
  }
}

/**
 * One random change of the world's pods (there must be some): relabel a present pod, delete one (while
 * at least half stay), or re-create a deleted one — same name and address, maybe another label.
 */
export function randomPodMutation(w: World, rng: Rng): Mutation {
  const all = [...w.pods.values()];
  const present = all.filter((p) => p.present);
  const deleted = all.filter((p) => !p.present);
  const what = rng.pick(['label', 'label', 'delete', 'create'] as const);
  if (deleted.length > 0 && (what === 'create' || present.length <= all.length / 2)) {
    return { kind: 'podCreate', name: rng.pick(deleted).name, app: rng.pick(POD_APPS) };
  }
  const p = rng.pick(present);
  if (what === 'delete' && present.length - 1 >= all.length / 2) return { kind: 'podDelete', name: p.name };
  return { kind: 'podLabel', name: p.name, app: rng.pick(POD_APPS.filter((a) => a !== p.app)) };
}

/** The node labels a selector asks for (exact matchLabels, as EgressGateway.spec.nodeSelector). */
export function selectorLabels(s: Selector): Record<string, string> {
  if (s === 'all') return { [GATEWAY_NODE_LABEL]: '' };
  if (s === 'poolA') return { [POOL_LABEL]: 'a' };
  if (s === 'poolB') return { [POOL_LABEL]: 'b' };
  return { [HOSTNAME_LABEL]: s.slice('node:'.length) };
}

/** Whether a gateway selecting `s` selects node `n` (labels as the world puts them on nodes). */
export function selects(s: Selector, n: NodeSpec): boolean {
  if (s === 'all') return true;
  if (s === 'poolA') return n.pool === 'a';
  if (s === 'poolB') return n.pool === 'b';
  return s.slice('node:'.length) === n.name;
}

export function gatewayObject(g: GatewaySpec): object {
  const sourceIP = g.mode === 'vip'
    ? { mode: MODE_VIP, virtualIPAddress: { ip: g.vip, ...(g.interfaces ? { interfaces: g.interfaces } : {}) } }
    : { mode: MODE_PRIMARY_IP, primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth0' } };
  return { apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGateway', metadata: { name: g.name }, spec: { nodeSelector: selectorLabels(g.selector), sourceIP } };
}

export function policyObject(p: PolicySpec): object {
  return {
    apiVersion: 'network.deckhouse.io/v1alpha1',
    kind: 'EgressGatewayPolicy',
    metadata: { name: p.name },
    spec: {
      egressGatewayName: p.gateway,
      destinationCIDRs: p.cidrs,
      ...(p.excluded.length > 0 ? { excludedCIDRs: p.excluded } : {}),
      selectors: [{ podSelector: { matchLabels: { app: p.app } } }],
    },
  };
}
