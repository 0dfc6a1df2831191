// What must hold once a round has healed (the round polls these until they all hold: convergence):
//
//   desired    the pure core, run from scratch (`reconcile`, the whole-recompute path) on a snapshot read
//              from the API server, has nothing to write: no orphan or missing active-for or member
//              label on a Node or CiliumNode, no orphan or missing instance or CEGP, every status as
//              the core would write it;
//   truth      statuses say what is true, by an oracle that shares nothing with the core: the world's
//              nodes, selectors and impairments decide which nodes are eligible; the active node is one
//              of them and carries the label, ready counts match, reasons match, policies point at
//              their gateway's node and VIP; bad objects end as they must (invalid, inert, orphan);
//   dataplane  each VIP is on exactly its gateway's active node's interface and on no other node;
//   badInput   the valid objects get exactly what they would get without the bad ones (the core run on
//              the snapshot with and without them agrees on every valid gateway and policy);
//   linux      with `--dataplane linux`: every node's kernel holds exactly what the snapshot implies for
//              its pods and the gateways (linux.ts). The truth then checks the gateways' dataplane objects
//              instead of CEGPs (there are none), and a cilium-agent that is not Ready impairs nothing.
//
// The round checks what happened *during* it separately (answers.ts, audit.ts, the processes).

import { ACTIVE_FOR_PREFIX, MODE_VIP, OWNED_LABELS } from '../../src/api/names.ts';
import type { CiliumEgressGatewayPolicy, Condition, EgressGateway, EgressGatewayDataplane, EgressGatewayInstance, EgressGatewayPolicy, PodLike } from '../../src/api/types.ts';
import { listObjects } from '../../src/cli/cluster.ts';
import { DEFAULT_AGENT_LOCATION, snapshotFromObjects, type ObjectSet } from '../../src/cli/snapshot-input.ts';
import { describeWrite } from '../../src/controller/apply.ts';
import { reconcile } from '../../src/core/reconcile.ts';
import type { DataplaneMode } from '../../src/api/names.ts';
import type { CoreOptions, Desired, Snapshot } from '../../src/core/types.ts';
import { instanceName } from '../../src/core/util.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { ALL_PODS, DATAPLANES } from '../../src/kube/resources.ts';
import type { BadObject } from './invalid.ts';
import { linuxDataplaneViolations, type LinuxCoverage, type LinuxKernel } from './linux.ts';
import { selects, type Impairment, type PolicySpec, type World } from './world.ts';

export interface Observed {
  at: number;
  mode: DataplaneMode;
  objects: ObjectSet;
  snapshot: Snapshot;
  /** Nodes holding each address of interest on an interface. */
  holders: Map<string, string[]>;
  /** linux: every Pod, and the gateways' dataplane objects (also in the snapshot, as the controller watches them). */
  pods: PodLike[];
  dataplanes: EgressGatewayDataplane[];
  /** linux: each node's data plane as its kernel holds it (observeKernels fills it). */
  kernels: Map<string, LinuxKernel>;
}

/**
 * Everything the checks read, in one go: the API objects (as the controller lists them) and the VIPs on
 * the nodes' interfaces. Heartbeats count as live: the round checks only after healing, when every agent
 * runs; one that does not renew shows as a difference (the controller then fails its node over).
 */
export async function observe(client: KubeClient, nodes: ReadonlyArray<{ name: string }>, addressesOf: (node: string) => Promise<string[]>, mode: DataplaneMode = 'cilium'): Promise<Observed> {
  const o = await observeApi(client, mode);
  await observeAddresses(o, nodes, addressesOf);
  return o;
}

/** The API half of `observe` (holders left empty: observeAddresses fills them). */
export async function observeApi(client: KubeClient, mode: DataplaneMode = 'cilium'): Promise<Observed> {
  const linux = mode === 'linux';
  const [objects, dataplanes, pods] = await Promise.all([
    listObjects(client, DEFAULT_AGENT_LOCATION),
    linux ? client.list<EgressGatewayDataplane>(DATAPLANES).then((l) => l.items) : [],
    linux ? client.list<PodLike>(ALL_PODS).then((l) => l.items) : [],
  ]);
  const at = Date.now();
  const snapshot = snapshotFromObjects(objects, { now: at });
  return { at, mode, objects, snapshot: linux ? { ...snapshot, dataplanes } : snapshot, holders: new Map(), pods, dataplanes, kernels: new Map() };
}

export async function observeAddresses(o: Observed, nodes: ReadonlyArray<{ name: string }>, addressesOf: (node: string) => Promise<string[]>): Promise<void> {
  for (const n of nodes) {
    for (const ip of await addressesOf(n.name)) o.holders.set(ip, [...(o.holders.get(ip) ?? []), n.name]);
  }
}

/** The core's options as the controller runs them (its defaults; `--dataplane linux` needs no cilium-agent). */
const coreOptions = (mode: DataplaneMode): CoreOptions => (mode === 'linux' ? { handoverTimeoutMs: 5000, requireCiliumAgent: false, dataplane: 'linux' } : { handoverTimeoutMs: 5000, requireCiliumAgent: true });

/** Whether an impairment keeps a node from serving (a cilium-agent matters to the Cilium data plane only). */
const impairs = (i: Impairment, mode: DataplaneMode): boolean => i !== 'none' && !(i === 'ciliumNotReady' && mode === 'linux');

export function desiredViolations(o: Observed): string[] {
  return reconcile(o.snapshot, coreOptions(o.mode)).writes.map((w) => `desired: the core would still write: ${describeWrite(w)}${w.kind === 'event' ? ` (${w.note})` : ''}`);
}

const readyOf = (s: unknown): Condition | undefined => (s as { conditions?: Condition[] } | undefined)?.conditions?.find((c) => c.type === 'Ready');

/** Nodes carrying a label on the Node (and, separately, on the CiliumNode). */
function carriers(o: Observed, key: string): { nodes: string[]; ciliumNodes: string[] } {
  return {
    nodes: o.objects.nodes.filter((n) => n.metadata.labels?.[key] !== undefined).map((n) => n.metadata.name).sort(),
    ciliumNodes: o.objects.ciliumNodes.filter((n) => n.metadata.labels?.[key] !== undefined).map((n) => n.metadata.name).sort(),
  };
}

/**
 * Why the core, run on the same snapshot, counts some of the nodes the world calls eligible out — so that
 * a readyNodes disagreement names its input (a Lease, a pod, a condition) instead of just the count.
 */
function coreReasons(d: Desired, gateway: string, eligible: readonly string[]): string {
  const verdicts = d.gateways.get(gateway)?.candidates ?? [];
  const out = eligible.map((n) => {
    const v = verdicts.find((c) => c.node === n);
    return !v ? `${n}: not a candidate` : v.eligible ? '' : `${n}: ${v.reasons.join('+')}`;
  }).filter((x) => x !== '');
  return out.length > 0 ? `; the core says ${out.join(', ')}` : '';
}

/** The bad objects that the suite asked for and the API accepted (what exists now). */
export interface BadState {
  object: BadObject;
  accepted: boolean;
}

/** `apiOnly`: skip what needs the nodes' addresses (VIP holders). */
export function truthViolations(o: Observed, world: World, bad: readonly BadState[], apiOnly: boolean): string[] {
  const out: string[] = [];
  let desired: Desired | undefined;
  const coreView = (): Desired => (desired ??= reconcile(o.snapshot, coreOptions(o.mode)).desired);
  const linux = o.mode === 'linux';
  const dataplanes = new Map(o.dataplanes.map((d) => [d.metadata.name, d]));
  if (linux && o.objects.cegps.length > 0) out.push(`truth: CEGPs [${o.objects.cegps.map((c) => c.metadata.name)}] with --dataplane linux`);
  const gateways = new Map(o.objects.gateways.map((g) => [g.metadata.name, g]));
  const policies = new Map(o.objects.policies.map((p) => [p.metadata.name, p]));
  const cegps = new Map(o.objects.cegps.map((c) => [c.metadata.name, c]));
  const instancesOf = (gw: string): EgressGatewayInstance[] => o.objects.instances.filter((i) => i.metadata.ownerReferences?.some((r) => r.name === gw) || i.metadata.name.startsWith(`${gw}-`));
  const activeOf = new Map<string, string>();

  for (const spec of world.gateways.values()) {
    const g = gateways.get(spec.name) as EgressGateway | undefined;
    const where = `truth: gateway ${spec.name}`;
    if (!g) {
      out.push(`${where}: missing from the API`);
      continue;
    }
    const selected = [...world.nodes.values()].filter((n) => selects(spec.selector, n));
    const eligible = selected.filter((n) => !impairs(n.impairment, o.mode)).map((n) => n.name).sort();
    const st = g.status;
    const cond = readyOf(st);
    const active = st?.activeNodeName ?? '';
    activeOf.set(spec.name, active);
    if (st?.observedGeneration !== g.metadata.generation) out.push(`${where}: observedGeneration ${st?.observedGeneration} != generation ${g.metadata.generation}`);
    if (st?.totalNodes !== selected.length) out.push(`${where}: totalNodes ${st?.totalNodes}, but ${selected.length} nodes match its selector`);
    if (st?.readyNodes !== eligible.length) out.push(`${where}: readyNodes ${st?.readyNodes}, but ${eligible.length} are eligible (${eligible.join(',') || 'none'})${coreReasons(coreView(), spec.name, eligible)}`);
    const label = carriers(o, `${ACTIVE_FOR_PREFIX}${spec.name}`);
    const vipNodes = spec.vip ? (o.holders.get(spec.vip) ?? []) : [];
    const insts = instancesOf(spec.name);
    if (linux) out.push(...dataplaneObjectViolations(where, dataplanes.get(spec.name), active, o, world));
    // Deleted but still there after convergence: the finalizer was never released, by the node's agent
    // (live member) or the controller (otherwise). That is no "memory of a failed handover" below.
    for (const i of insts) if (i.metadata.deletionTimestamp) out.push(`${where}: instance ${i.metadata.name} was deleted at ${i.metadata.deletionTimestamp} and still waits for its finalizer to be released`);
    if (eligible.length > 0) {
      if (!eligible.includes(active)) out.push(`${where}: active node "${active}" is not one of the eligible ${eligible.join(',')}`);
      const want = spec.mode === 'vip' ? 'ElectionSucceedAndVirtualIPAnnounced' : 'ElectionSucceed';
      if (cond?.status !== 'True' || cond.reason !== want) out.push(`${where}: Ready ${cond?.status}/${cond?.reason}, want True/${want}`);
      if (label.nodes.join() !== active || label.ciliumNodes.join() !== active) {
        out.push(`${where}: active-for label on Nodes [${label.nodes}] and CiliumNodes [${label.ciliumNodes}], want only ${active}`);
      }
      if (spec.mode === 'vip') {
        if (!apiOnly && vipNodes.join() !== active) out.push(`${where}: VIP ${spec.vip} is on [${vipNodes}], want only ${active}`);
        const want = instanceName(spec.name, active);
        const ready = insts.find((i) => i.metadata.name === want && !i.metadata.deletionTimestamp && readyOf(i.status)?.status === 'True');
        if (!ready || insts.length !== 1) out.push(`${where}: instances [${insts.map((i) => i.metadata.name)}], want only a Ready ${want}`);
      }
    } else {
      if (active !== '') out.push(`${where}: active node "${active}" with no eligible node`);
      if (cond?.status !== 'False' || cond.reason !== 'NoEligibleNode') out.push(`${where}: Ready ${cond?.status}/${cond?.reason}, want False/NoEligibleNode`);
      if (label.nodes.length + label.ciliumNodes.length > 0) out.push(`${where}: active-for label on [${label.nodes}]/[${label.ciliumNodes}] with no eligible node`);
      if (!apiOnly && vipNodes.length > 0) out.push(`${where}: VIP ${spec.vip} on [${vipNodes}] with no eligible node`);
      // An instance whose handover timed out stays as the core's memory of the failed attempt until a
      // node confirms (election.ts): allowed, but not Ready (seed 20261208, round 78).
      const ready = insts.filter((i) => readyOf(i.status)?.status === 'True');
      if (ready.length > 0) out.push(`${where}: Ready instances [${ready.map((i) => i.metadata.name)}] with no eligible node`);
    }
  }

  for (const spec of world.policies.values()) {
    const p = policies.get(spec.name) as EgressGatewayPolicy | undefined;
    const where = `truth: policy ${spec.name}`;
    if (!p) {
      out.push(`${where}: missing from the API`);
      continue;
    }
    const cond = readyOf(p.status);
    const cegp = cegps.get(`d8.${spec.name}`);
    const gw = world.gateways.get(spec.gateway);
    if (!gw) {
      if (cond?.status !== 'False' || cond.reason !== 'GatewayNotFound') out.push(`${where}: Ready ${cond?.status}/${cond?.reason}, want False/GatewayNotFound (${spec.gateway} is gone)`);
      if (cegp) out.push(`${where}: CEGP d8.${spec.name} exists for a missing gateway`);
      continue;
    }
    const active = activeOf.get(spec.gateway) ?? '';
    const want = active !== '' ? ['True', 'GatewayActive'] : ['False', 'NoActiveNode'];
    if (cond?.status !== want[0] || cond?.reason !== want[1]) out.push(`${where}: Ready ${cond?.status}/${cond?.reason}, want ${want.join('/')}`);
    if ((p.status?.activeNodeName ?? '') !== active) out.push(`${where}: activeNodeName "${p.status?.activeNodeName}", its gateway's is "${active}"`);
    if (gw.mode === 'vip' && p.status?.egressIP !== gw.vip) out.push(`${where}: egressIP ${p.status?.egressIP}, its gateway's VIP is ${gw.vip}`);
    if (gw.mode === 'primary' && p.status?.interface !== 'eth0') out.push(`${where}: interface ${p.status?.interface}, want eth0`);
    if (!linux) out.push(...cegpViolations(where, cegp, spec, gw));
  }

  for (const b of bad) out.push(...badTruth(b, gateways, policies, cegps, o));
  return out;
}

/** linux: the gateway's dataplane object names its active node, that node's address and its valid policies. */
function dataplaneObjectViolations(where: string, d: EgressGatewayDataplane | undefined, active: string, o: Observed, world: World): string[] {
  if (!d?.spec) return [`${where}: no dataplane object`];
  const out: string[] = [];
  const s = d.spec;
  const node = o.objects.nodes.find((n) => n.metadata.name === active);
  const ip = (node?.status as { addresses?: Array<{ type?: string; address?: string }> } | undefined)?.addresses?.find((a) => a.type === 'InternalIP')?.address ?? '';
  if ((s.activeNodeName ?? '') !== active || (s.tunnelEndpoint ?? '') !== (active ? ip : '')) out.push(`${where}: dataplane object says active ${s.activeNodeName || '(none)'} at ${s.tunnelEndpoint || '(none)'}, want ${active || '(none)'} at ${ip || '(none)'}`);
  const show = (p: Pick<PolicySpec, 'name' | 'cidrs' | 'excluded'>) => `${p.name} ${p.cidrs.join(',')}${p.excluded.length ? ` except ${p.excluded.join(',')}` : ''}`;
  const want = [...world.policies.values()].filter((p) => p.gateway === d.metadata.name).sort((a, b) => (a.name < b.name ? -1 : 1)).map(show);
  const got = (s.policies ?? []).map((p) => show({ name: p.name, cidrs: p.destinationCIDRs ?? [], excluded: p.excludedCIDRs ?? [] })).sort();
  if (got.join() !== want.join()) out.push(`${where}: dataplane object policies [${got.join('; ')}], want [${want.join('; ')}]`);
  return out;
}

function cegpViolations(where: string, cegp: CiliumEgressGatewayPolicy | undefined, p: { name: string; gateway: string; cidrs: string[]; excluded: string[] }, gw: { mode: string; vip?: string }): string[] {
  if (!cegp) return [`${where}: no CEGP d8.${p.name}`];
  const out: string[] = [];
  const s = cegp.spec;
  if (!s) return [`${where}: CEGP d8.${p.name} without a spec`];
  if (Object.entries(OWNED_LABELS).some(([k, v]) => cegp.metadata.labels?.[k] !== v)) out.push(`${where}: CEGP without our labels`);
  if (JSON.stringify(s.destinationCIDRs) !== JSON.stringify(p.cidrs)) out.push(`${where}: CEGP destinationCIDRs ${s.destinationCIDRs}, want ${p.cidrs}`);
  if (JSON.stringify(s.excludedCIDRs ?? []) !== JSON.stringify(p.excluded)) out.push(`${where}: CEGP excludedCIDRs ${s.excludedCIDRs}, want ${p.excluded}`);
  const sel = JSON.stringify(s.egressGateway.nodeSelector.matchLabels);
  if (sel !== JSON.stringify({ [`${ACTIVE_FOR_PREFIX}${p.gateway}`]: '' })) out.push(`${where}: CEGP selects ${sel}, want active-for-${p.gateway}`);
  if (gw.mode === 'vip' ? s.egressGateway.egressIP !== gw.vip : s.egressGateway.interface !== 'eth0') {
    out.push(`${where}: CEGP egress ${s.egressGateway.egressIP ?? s.egressGateway.interface}, want ${gw.mode === 'vip' ? gw.vip : 'eth0'}`);
  }
  return out;
}

export function badTruth(b: BadState, gateways: Map<string, EgressGateway>, policies: Map<string, EgressGatewayPolicy>, cegps: Map<string, CiliumEgressGatewayPolicy>, o: Observed): string[] {
  const where = `truth: bad ${b.object.kind} ${b.object.name} (${b.object.why})`;
  const { expect } = b.object;
  // Whether the API took it is the schema's verdict, checked once by the round (acceptanceViolations).
  if (expect === 'rejected' || !b.accepted) return [];
  if (b.object.kind === 'EgressGateway') {
    const g = gateways.get(b.object.name);
    if (!g) return [`${where}: missing from the API`];
    const cond = readyOf(g.status);
    const out: string[] = [];
    // unannounceable: every node refuses it; the controller goes round them once (VirtualIPAnnouncing,
    // also during a retry) and then rests (VIPRefused), or has no node left for other reasons (NoEligibleNode).
    const reasons = expect === 'invalid' ? ['InvalidSpec', 'DuplicateVIP'] : expect === 'unannounceable' ? ['VIPRefused', 'NoEligibleNode', 'VirtualIPAnnouncing'] : ['NoEligibleNode'];
    if (cond?.status !== 'False' || !reasons.includes(cond.reason)) out.push(`${where}: Ready ${cond?.status}/${cond?.reason}, want False/${reasons.join('|')}`);
    if ((g.status?.activeNodeName ?? '') !== '') out.push(`${where}: has active node ${g.status?.activeNodeName}`);
    const label = carriers(o, `${ACTIVE_FOR_PREFIX}${b.object.name}`);
    if (label.nodes.length + label.ciliumNodes.length > 0) out.push(`${where}: active-for label on [${label.nodes}]/[${label.ciliumNodes}]`);
    const insts = o.objects.instances.filter((i) => i.metadata.name.startsWith(`${b.object.name}-`));
    if (expect === 'unannounceable') {
      // The instance of the last node tried stays, carrying the memory of the others (core:
      // refusals.ts); none may be Ready, and no node may hold the address.
      const ready = insts.filter((i) => readyOf(i.status)?.status === 'True');
      if (ready.length > 0) out.push(`${where}: Ready instances [${ready.map((i) => i.metadata.name)}]`);
      const ip = (b.object.object as { spec?: { sourceIP?: { virtualIPAddress?: { ip?: string } } } }).spec?.sourceIP?.virtualIPAddress?.ip ?? '';
      const on = o.holders.get(ip) ?? [];
      if (on.length > 0) out.push(`${where}: ${ip} is on [${on}]`);
    } else if (insts.length > 0) out.push(`${where}: instances [${insts.map((i) => i.metadata.name)}]`);
    return out;
  }
  const p = policies.get(b.object.name);
  if (!p) return [`${where}: missing from the API`];
  const cond = readyOf(p.status);
  // A policy the controller cannot render names a gateway of the world, which a change may have deleted
  // (seed 20261216 round 8: gw-p1 deleted in round 3): then it is an orphan first, as for the core.
  const named = (b.object.object as { spec?: { egressGatewayName?: string } }).spec?.egressGatewayName ?? '';
  const want = expect === 'orphan' || (expect === 'badPolicy' && !gateways.has(named)) ? 'GatewayNotFound' : 'InvalidSpec';
  const out: string[] = [];
  if (cond?.status !== 'False' || cond.reason !== want) out.push(`${where}: Ready ${cond?.status}/${cond?.reason}, want False/${want}`);
  if (cegps.has(`d8.${b.object.name}`)) out.push(`${where}: has a CEGP`);
  return out;
}

/** The schema's verdict on the bad objects: it refuses exactly those that must be refused. */
export function acceptanceViolations(bad: readonly BadState[]): string[] {
  return bad.flatMap((b) => {
    const where = `schema: bad ${b.object.kind} ${b.object.name} (${b.object.why})`;
    if (b.object.expect === 'rejected') return b.accepted ? [`${where}: the API server accepted it; the schema should refuse it`] : [];
    return b.accepted ? [] : [`${where}: the API server refused it, but the schema should accept it (${b.object.expect})`];
  });
}

/** Every VIP of the suite's gateways on exactly the active node; no VIP of the suite anywhere else. */
export function dataplaneViolations(o: Observed, world: World, allVips: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  const active = new Map(o.objects.gateways.map((g) => [g.metadata.name, g.status?.activeNodeName ?? '']));
  for (const [vip, gateway] of allVips) {
    const spec = world.gateways.get(gateway);
    const on = o.holders.get(vip) ?? [];
    const want = spec?.vip === vip && active.get(gateway) ? [active.get(gateway)!] : [];
    if (on.join() !== want.join()) out.push(`dataplane: ${vip} (${gateway}) is on [${on}], want [${want}]`);
  }
  return out;
}

const isBad = (name: string): boolean => name.startsWith('bad-');

/**
 * What the valid objects get from a desired state: their decisions, instances, CEGPs and active-for labels.
 * A node whose only active-for labels are bad gateways' has none of the valid ones: it is left out, as it
 * is when the bad gateways are absent (linux seed 20261217 round 41: node1 [] against no entry).
 */
export function validPart(d: Pick<Desired, 'gateways' | 'instances' | 'cegps' | 'nodeLabels' | 'dataplanes'>): string {
  const gws = [...d.gateways.values()].filter((g) => !isBad(g.name)).map((g) => [g.name, g.target, g.active, g.phase]);
  const insts = [...d.instances.values()].filter((i) => !isBad(i.metadata.name)).map((i) => [i.metadata.name, i.spec]);
  const cegps = [...d.cegps.values()].filter((c) => !isBad(c.metadata.name.replace(/^d8\./, ''))).map((c) => [c.metadata.name, c.spec]);
  const labels = [...d.nodeLabels]
    .map(([n, keys]) => [n, [...keys].filter((k) => k.startsWith(ACTIVE_FOR_PREFIX) && !isBad(k.slice(ACTIVE_FOR_PREFIX.length))).sort()] as const)
    .filter(([, keys]) => keys.length > 0);
  const dataplanes = [...(d.dataplanes?.values() ?? [])].filter((o) => !isBad(o.metadata.name)).map((o) => [o.metadata.name, o.spec]);
  return JSON.stringify({ gws, insts, cegps, labels, dataplanes });
}

/** The valid objects' share of the desired state does not depend on the bad objects. */
export function badInputViolations(o: Observed): string[] {
  if (!o.snapshot.gateways.some((g) => isBad(g.metadata.name)) && !o.snapshot.policies.some((p) => isBad(p.metadata.name))) return [];
  const without: Snapshot = { ...o.snapshot, gateways: o.snapshot.gateways.filter((g) => !isBad(g.metadata.name)), policies: o.snapshot.policies.filter((p) => !isBad(p.metadata.name)) };
  const a = validPart(reconcile(o.snapshot, coreOptions(o.mode)).desired);
  const b = validPart(reconcile(without, coreOptions(o.mode)).desired);
  return a === b ? [] : [`badInput: the valid objects' desired state differs with the bad objects present:\n  with:    ${a}\n  without: ${b}`];
}

/** Where the linux check reads the nodes' kernels, and what it needs besides the snapshot. */
export interface LinuxNodes {
  kernelOf(node: string): Promise<LinuxKernel>;
  nodeIps: ReadonlyMap<string, string>;
  podCIDR: string;
  /** Overwritten by every check with what it compared (the round records the converged one's). */
  coverage?: LinuxCoverage;
}

/** Reads every node's kernel into `o` (one node after the other: the checks must not load the machine). */
export async function observeKernels(o: Observed, nodes: ReadonlyArray<{ name: string }>, linux: LinuxNodes): Promise<void> {
  for (const n of nodes) o.kernels.set(n.name, await linux.kernelOf(n.name));
}

/** The linux invariant on an observation (linux.ts). */
export function linuxViolations(o: Observed, world: World, linux: Pick<LinuxNodes, 'nodeIps' | 'podCIDR' | 'coverage'>): string[] {
  return linuxDataplaneViolations({ world, gateways: o.objects.gateways, dataplanes: o.dataplanes, pods: o.pods, nodeIps: linux.nodeIps, podCIDR: linux.podCIDR, kernels: o.kernels }, linux.coverage);
}

/** All of them; empty means converged. */
export function convergenceViolations(o: Observed, world: World, bad: readonly BadState[], allVips: ReadonlyMap<string, string>, linux?: Pick<LinuxNodes, 'nodeIps' | 'podCIDR'>): string[] {
  return [...desiredViolations(o), ...truthViolations(o, world, bad, false), ...dataplaneViolations(o, world, allVips), ...badInputViolations(o), ...(linux ? linuxViolations(o, world, linux) : [])];
}

/**
 * Polls until converged: the API half first, and the nodes' addresses (and, with the Linux data plane,
 * their kernels) only once it holds (reading them starts processes per node: on a loaded machine the
 * checks must not be what slows the cluster down). Returns what was still wrong at the last look (empty:
 * converged).
 */
export async function checkConverged(client: KubeClient, nodes: ReadonlyArray<{ name: string }>, addressesOf: (node: string) => Promise<string[]>, world: World, bad: readonly BadState[], allVips: ReadonlyMap<string, string>, linux?: LinuxNodes): Promise<string[]> {
  const o = await observeApi(client, linux ? 'linux' : 'cilium');
  const api = [...desiredViolations(o), ...truthViolations(o, world, bad, true), ...badInputViolations(o)];
  if (api.length > 0) return api;
  await observeAddresses(o, nodes, addressesOf);
  const vips = [...truthViolations(o, world, bad, false), ...dataplaneViolations(o, world, allVips)];
  if (vips.length > 0 || !linux) return vips;
  await observeKernels(o, nodes, linux);
  return linuxViolations(o, world, linux);
}

/** Gateways of a mode (for the round's record). */
export const isVipGateway = (g: EgressGateway): boolean => g.spec?.sourceIP?.mode === MODE_VIP;
