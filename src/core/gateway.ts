// The core's unit of work: one gateway name — the gateway with that name, if any, and the policies
// that name it. `planGateway` decides everything about it from its inputs alone (eligibility,
// election, handover, instances, status, and its policies' CEGPs and statuses — or, with the Linux data
// plane, its dataplane object) and the writes that bring its own objects there. What couples gateways (the election's load counts, duplicate VIPs,
// node labels) is settled in combine.ts.
//
// Inputs and plans are immutable: a plan stays valid as long as its inputs do (and the time is within
// [validFrom, validUntil)), so the shell reuses the plans of the gateways no event touched.

import type { CiliumEgressGatewayPolicy, DataplanePolicy, EgressGatewayDataplane, EgressGatewayInstance } from '../api/types.ts';
import { MODE_VIP, cegpName } from '../api/names.ts';
import type { CoreEvent, Write } from './types.ts';
import { elect, type Election, type ElectionInputs } from './election.ts';
import { desiredInstance, instanceUpToDate, isConfirmed, keptAssignedAt, specMatches, type InstanceFacts } from './instances.ts';
import { formatRefusals, parseRefusals } from './refusals.ts';
import { cegpUpToDate } from './compare.ts';
import { egressGatewaySpec, isOurCEGP, policyOutcome, type GatewayView, type PolicyOutcome } from './render.ts';
import { gatewayOutcome, gatewayRef, type GatewayOutcome } from './status.ts';
import type { GatewayInfo, PolicyInfo } from './validate.ts';
import { byString, instanceName, toIso } from './util.ts';
import { dataplanePolicy, proposedTunnelID, renderGatewayDataplane } from './dataplane.ts';

export interface GatewayInputs extends ElectionInputs {
  name: string;
  /** The gateway (duplicate-VIP rule applied); undefined when none has this name: its policies are orphans. */
  gateway: GatewayInfo | undefined;
  /** The candidates' names (one array shared by the gateways with the same selector). */
  candidateNames: readonly string[];
  /** Every instance name that is one of this gateway's (see gatewayOfInstanceName), whoever owns it. */
  takenNames: ReadonlySet<string>;
  /** The policies naming this gateway, in name order. */
  policies: readonly PolicyInfo[];
  /** Observed CEGPs by policy name. */
  cegps: ReadonlyMap<string, CiliumEgressGatewayPolicy>;
  /** `--dataplane linux`: the observed dataplane object of this name. */
  dataplane?: EgressGatewayDataplane;
}

/** What the plan still has to write to its own objects, each list in name order. */
export interface GatewayWrites {
  /** createInstance / updateInstance. */
  instances: readonly Write[];
  applyCEGPs: readonly Write[];
  /** gatewayStatus, with the events recording its transition. */
  status: { write: Write; events: readonly CoreEvent[] } | undefined;
  policyStatuses: ReadonlyArray<{ name: string; write: Write; events: readonly CoreEvent[] }>;
  /** clearMoveRequest and the event reporting the move's outcome. */
  clearMove: { write: Write; event: CoreEvent } | undefined;
  /** Owned instances no longer wanted: deleted (unless deleting), finalizer released when no agent can (see assembleWrites). */
  stale: readonly InstanceFacts[];
  deleteCEGPs: readonly Write[];
}

export interface GatewayPlan {
  readonly name: string;
  readonly inputs: GatewayInputs;
  /** Undefined when no gateway has this name. */
  readonly election: Election | undefined;
  readonly outcome: GatewayOutcome | undefined;
  /** The move-to annotation is to be cleared (move done or rejected), with the event reporting it. */
  readonly moveRequest: CoreEvent | undefined;
  readonly instances: ReadonlyMap<string, EgressGatewayInstance>;
  /** The policies' outcomes, in the order of `inputs.policies`. */
  readonly policies: readonly PolicyOutcome[];
  /**
   * The rendered data-plane objects, one entry per data plane: what every node needs for this gateway's
   * traffic. `cilium`: its policies' CEGPs (written in the Cilium data plane only; in the Linux one they
   * decide which policies render and with what). `linux`: its dataplane object (`--dataplane linux`, when
   * a gateway has this name), with the tunnel id it proposes (combine.ts makes ids unique).
   */
  readonly rendered: { readonly cilium: ReadonlyMap<string, CiliumEgressGatewayPolicy>; readonly linux?: EgressGatewayDataplane };
  readonly writes: GatewayWrites;
  /** The plan holds for a pass at any `now` in [validFrom, validUntil) (and the same inputs). */
  readonly validFrom: number;
  readonly validUntil: number;
}

const NO_LOAD: ReadonlyMap<string, number> = new Map();
const NO_INSTANCES: ReadonlyMap<string, EgressGatewayInstance> = new Map();
const NO_WRITES: GatewayWrites = Object.freeze({ instances: [], applyCEGPs: [], status: undefined, policyStatuses: [], clearMove: undefined, stale: [], deleteCEGPs: [] });

/** Nodes the election and status refer to by name besides the candidates: their states are inputs too. */
export function gatewayRefs(g: GatewayInfo | undefined, labelled: readonly string[], instances: readonly InstanceFacts[]): string[] {
  if (!g) return [];
  const st = (g.gateway as { status?: { activeNodeName?: unknown } }).status;
  const out = [...labelled, ...instances.map((f) => f.node)];
  if (g.moveTo !== undefined) out.push(g.moveTo);
  if (typeof st?.activeNodeName === 'string') out.push(st.activeNodeName);
  return out;
}

/** The instances the gateway wants, and whether one is assigned now (its assigned-at is `nowIso`). */
function desiredInstances(g: GatewayInfo, e: Election, taken: ReadonlySet<string>, nowIso: string): { instances: Map<string, EgressGatewayInstance>; usesNow: boolean } {
  const instances = new Map<string, EgressGatewayInstance>();
  let usesNow = false;
  const handingOverTo = handoverUnderWay(g, e, taken);
  for (const [node, want] of e.instanceNodes) {
    const observed = e.primary.get(node);
    let name: string;
    if (observed) name = observed.name;
    else {
      if (!want.create) continue;
      name = instanceName(g.name, node);
      // The name is still taken (an old instance terminating): create it on a later pass.
      if (taken.has(name)) continue;
    }
    const held = heldInstance(g, e, node, observed);
    const handoverTo = held ?? (node === e.observedActive ? handingOverTo : undefined);
    // A retry of a refused sequence (refusals.ts) assigns the target's instance anew: a new handover clock.
    // So does an abandoned handover its old owner's (the mark goes): an agent that let go of the VIP
    // meanwhile (a fence) takes it back now, and must confirm it in time like any target. A held target
    // is assigned anew when it is first held (the refusal memory's retry time counts from it) and when
    // it is released (the mark goes).
    const anew =
      (e.refusals?.expiredAt !== undefined && node === e.target) ||
      (handoverTo === undefined && observed !== undefined && observed.handoverTo !== '') ||
      (held === node && observed !== undefined && observed.handoverTo !== node);
    const kept = anew ? undefined : keptAssignedAt(g, node, observed);
    if (kept === undefined) usesNow = true;
    const refused = node === e.target ? refusedAnnotation(g, e, observed) : undefined;
    instances.set(name, desiredInstance(g, node, name, kept ?? nowIso, { refused, handoverTo }));
  }
  return { instances, usesNow };
}

/**
 * While an abandoned target's instance is being withdrawn (Election.withdrawing: deleted in this pass, or
 * deleting and not yet released by its node's live agent), no other node may be given the VIP: that
 * node's agent, having listed its instance without a deletionTimestamp, may still take the VIP late (the
 * deletion is written after the makes of a pass, a slow API server spreads them apart, and the agent's
 * view lags the API server's), and would announce it beside the new owner. So each instance written
 * meanwhile that is not confirmed (does not hold the VIP already) is held with the handover mark, which
 * tells its agent not to take the VIP: the target's names its own node (it is next, and waits), any other
 * keeps its mark or is marked for the target. The pass that sees the instance gone (its agent withdrew and
 * removed the finalizer), or its node's heartbeat no longer live (a dead node's finalizer does not block
 * the failover), releases the target: mark removed, assigned anew. The held target's instance is written all the same (not left for the next pass) because
 * it carries the refusal memory (refusals.ts): the withdrawn instance may be gone before the next pass
 * (its agent releases the finalizer at once), and without the memory that node would be elected again.
 * Undefined: not held.
 */
function heldInstance(g: GatewayInfo, e: Election, node: string, observed: InstanceFacts | undefined): string | undefined {
  if (e.withdrawing.length === 0 || (observed !== undefined && isConfirmed(observed, g))) return undefined;
  if (node === e.target) return node;
  return observed !== undefined && observed.handoverTo !== '' ? observed.handoverTo : e.target;
}

/**
 * The node the VIP is being handed over to from the observed active node, if a handover is under way:
 * another node is the target and its instance is written (observed, or created in this pass), not yet
 * confirmed (once it is, the old owner's instance goes). The old owner's instance carries it
 * (HANDOVER_TO_ANNOTATION): its agent keeps the VIP if it holds it, but does not take it back.
 */
function handoverUnderWay(g: GatewayInfo, e: Election, taken: ReadonlySet<string>): string | undefined {
  if (e.target === '' || e.observedActive === '' || e.target === e.observedActive) return undefined;
  const tf = e.primary.get(e.target);
  if (tf !== undefined ? isConfirmed(tf, g) : taken.has(instanceName(g.name, e.target))) return undefined;
  return e.target;
}

/**
 * The refusal memory the target's instance carries (refusals.ts): the sequence's, while its own
 * instance is not confirmed; an observed value of the same sequence is kept (no rewrite per pass).
 */
function refusedAnnotation(g: GatewayInfo, e: Election, observed: InstanceFacts | undefined): string | undefined {
  const r = e.refusals;
  if (r === undefined || (r.nodes.size === 0 && r.retries === 0) || (observed !== undefined && isConfirmed(observed, g))) return undefined;
  const have = observed !== undefined && specMatches(observed.instance, observed.node, g) ? parseRefusals(observed.instance) : undefined;
  if (have !== undefined && have.retries === r.retries && [...r.nodes.keys()].every((n) => have.nodes.has(n))) {
    return formatRefusals(have);
  }
  return formatRefusals(r);
}

function moveRequest(g: GatewayInfo, e: Election): CoreEvent | undefined {
  const move = e.move;
  if (!move) return undefined;
  const done = move.state === 'honoured' && e.active === move.target;
  if (move.state !== 'rejected' && !done) return undefined;
  return { regarding: gatewayRef(g), type: done ? 'Normal' : 'Warning', reason: done ? 'Moved' : 'MoveRejected', note: move.note };
}

function renderedCEGPs(inputs: GatewayInputs, policies: readonly PolicyOutcome[]): Map<string, CiliumEgressGatewayPolicy> {
  const out = new Map<string, CiliumEgressGatewayPolicy>();
  inputs.policies.forEach((p, i) => {
    const c = policies[i]?.cegp;
    if (c) out.set(cegpName(p.name), c);
  });
  return out;
}

/**
 * The gateway's dataplane object: the node that carries its label after this pass and that node's
 * address, and exactly the policies that render a CEGP (so both data planes carry the same policies).
 */
function renderedDataplane(inputs: GatewayInputs, g: GatewayInfo, active: string, policies: readonly PolicyOutcome[]): EgressGatewayDataplane {
  const endpoint = active === '' ? undefined : (inputs.refs.get(active) ?? inputs.candidates.find((c) => c.name === active))?.address;
  const list: DataplanePolicy[] = [];
  inputs.policies.forEach((p, i) => {
    const c = policies[i]?.cegp;
    const d = c ? dataplanePolicy(p.name, c) : undefined;
    if (d) list.push(d);
  });
  // An invalid gateway claims no address: every agent keeps a dataplane object's VIP off its interfaces'
  // own addresses, so a VIP refused as a node's own address would take that node's primary IP away from
  // the valid PrimaryIP gateways it serves (found by the chaos suite, linux mode, seed 20261214 round 1).
  const claimed: GatewayInfo = g.invalid ? { ...g, vip: '', interfaceName: '' } : g;
  return renderGatewayDataplane(claimed, active, endpoint, proposedTunnelID(g.name, inputs.dataplane), list);
}

/** The writes that bring the gateway's own objects to the plan (none when they already are). */
function pendingWrites(
  inputs: GatewayInputs,
  outcome: GatewayOutcome | undefined,
  move: CoreEvent | undefined,
  instances: ReadonlyMap<string, EgressGatewayInstance>,
  policies: readonly PolicyOutcome[],
  cegps: ReadonlyMap<string, CiliumEgressGatewayPolicy>,
): GatewayWrites {
  const w = {
    instances: [] as Write[],
    applyCEGPs: [] as Write[],
    status: outcome?.changed ? { write: { kind: 'gatewayStatus', name: inputs.name, status: outcome.status } as Write, events: outcome.events } : undefined,
    policyStatuses: [] as Array<{ name: string; write: Write; events: readonly CoreEvent[] }>,
    clearMove: move ? { write: { kind: 'clearMoveRequest', gateway: inputs.name } as Write, event: move } : undefined,
    stale: [] as InstanceFacts[],
    deleteCEGPs: [] as Write[],
  };
  const owned = new Map(inputs.instances.map((f) => [f.name, f]));
  for (const name of [...instances.keys()].sort(byString)) {
    const want = instances.get(name) as EgressGatewayInstance;
    const have = owned.get(name);
    if (!have) w.instances.push({ kind: 'createInstance', object: want });
    else if (!have.deleting && !instanceUpToDate(have.instance, want)) w.instances.push({ kind: 'updateInstance', object: want });
  }
  for (const f of inputs.instances) if (!instances.has(f.name)) w.stale.push(f);
  inputs.policies.forEach((p, i) => {
    const out = policies[i] as PolicyOutcome;
    if (out.changed) w.policyStatuses.push({ name: p.name, write: { kind: 'policyStatus', name: p.name, status: out.status }, events: out.events });
    const name = cegpName(p.name);
    const want = cegps.get(name);
    const have = inputs.cegps.get(p.name);
    if (inputs.options.dataplane === 'linux') return; // no CEGPs: the dataplane object carries the policies
    if (want && want !== have && (!have || !cegpUpToDate(have, want))) w.applyCEGPs.push({ kind: 'applyCEGP', object: want });
    if (!want && have && isOurCEGP(have)) w.deleteCEGPs.push({ kind: 'deleteCEGP', name });
  });
  const none = w.instances.length + w.applyCEGPs.length + w.policyStatuses.length + w.stale.length + w.deleteCEGPs.length === 0 && !w.status && !w.clearMove;
  return none ? NO_WRITES : w;
}

/** Everything about one gateway name. `load`: the election's counts (see election.ts, step 3). */
export function planGateway(inputs: GatewayInputs, load: ReadonlyMap<string, number> = NO_LOAD): GatewayPlan {
  const nowIso = toIso(inputs.now);
  const g = inputs.gateway;
  const e = g ? elect(g, inputs, load) : undefined;
  const outcome = g && e ? gatewayOutcome(g, e, (n) => inputs.refs.has(n), nowIso, inputs.options.ciliumAgentSource) : undefined;
  const view: GatewayView | undefined = g && e && outcome ? { info: g, valid: e.valid, active: e.active, message: outcome.decision.message, egressGateway: egressGatewaySpec(g) } : undefined;
  const desired = g && e?.valid && g.mode === MODE_VIP ? desiredInstances(g, e, inputs.takenNames, nowIso) : { instances: NO_INSTANCES, usesNow: false };
  const policies = inputs.policies.map((p) => policyOutcome(p, view, inputs.cegps.get(p.name), nowIso));
  const cilium = renderedCEGPs(inputs, policies);
  const linux = g && e && inputs.options.dataplane === 'linux' ? renderedDataplane(inputs, g, e.active, policies) : undefined;
  const move = g && e ? moveRequest(g, e) : undefined;
  // A plan that wrote the time into something it wants holds for this very moment only.
  const usesNow = desired.usesNow || outcome?.changed === true || policies.some((p) => p.changed);
  return {
    name: inputs.name,
    inputs,
    election: e,
    outcome,
    moveRequest: move,
    instances: desired.instances,
    policies,
    rendered: linux ? { cilium, linux } : { cilium },
    writes: pendingWrites(inputs, outcome, move, desired.instances, policies, cilium),
    validFrom: usesNow ? inputs.now : (e?.clock.from ?? Number.NEGATIVE_INFINITY),
    validUntil: usesNow ? inputs.now + 1 : (e?.clock.until ?? Number.POSITIVE_INFINITY),
  };
}
