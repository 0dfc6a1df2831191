// One chaos round: plan it from the seed (pure), run its faults, object changes and bad input together,
// heal, wait until everything converged (invariants.ts), then check what happened during it: who
// answered for the VIPs (answers.ts), who wrote while not leading (audit.ts), which process crashed.

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DEFAULT_NAMESPACE, PLURAL_INSTANCES } from '../../src/api/names.ts';
import { nodeOfHeartbeatLease } from '../../src/controller/snapshot.ts';
import { instanceName } from '../../src/core/util.ts';
import { isStatus } from '../../src/kube/client.ts';
import { GATEWAYS, POLICIES } from '../../src/kube/resources.ts';
import { DEFAULT_AGENT_OPTIONS } from '../../src/agent/options.ts';
import type { DataplaneMode } from '../../src/api/names.ts';
import { applyMutation, deleteIfExists } from './apply.ts';
import { checkAnswers, type AnswerSummary } from './answers.ts';
import { acceptedRenewals, instanceLifetimes, writesByNonLeaders } from './audit.ts';
import { LEADER_LEASE, OBSERVER_IP, VIP_PROBE_MS, type ChaosCluster } from './cluster.ts';
import { describeFault, planFaults, runFault, type FaultKind, type FaultPlan } from './faults.ts';
import { HealthProbe, type SuiteHealth } from './health.ts';
import { badObjects, type BadObject } from './invalid.ts';
import { acceptanceViolations, checkConverged, type BadState } from './invariants.ts';
import type { LinuxCoverage } from './linux.ts';
import { Rng, roundSeed } from './rng.ts';
import { allVips, applyToWorld, describeMutation, GATEWAYS as GATEWAY_NAMES, randomMutation, randomPodMutation, type Mutation, type World } from './world.ts';

export interface RoundPlan {
  runSeed: number;
  round: number;
  seed: number;
  windowMs: number;
  faults: FaultPlan[];
  mutations: Array<{ at: number; mutation: Mutation }>;
  bad: Array<{ at: number; object: BadObject }>;
}

export interface PlanOptions {
  /** Draw faults of these kinds only. */
  faultKinds?: readonly FaultKind[];
}

/** Round `round` of a run seeded `runSeed`, planned from the world it starts from; and the world after it. */
export interface LanHosts {
  nodes: readonly string[];
  routers: readonly string[];
}

export function planRound(world: World, runSeed: number, round: number, hosts: LanHosts, opts: PlanOptions = {}): { plan: RoundPlan; after: World } {
  const seed = roundSeed(runSeed, round);
  const rng = new Rng(seed);
  const windowMs = rng.int(3000, 8000);
  const nodes = [...world.nodes.keys()];
  const faults = planFaults(rng, rng.int(1, 3), windowMs, nodes, opts.faultKinds);
  const mutations: RoundPlan['mutations'] = [];
  let after = world;
  const touched = new Set<string>();
  for (let i = rng.int(0, 4); i > 0; i--) {
    const m = randomMutation(after, rng);
    after = applyToWorld(after, m);
    mutations.push({ at: rng.int(0, windowMs), mutation: m });
    if ('name' in m) touched.add(m.name);
    if ('spec' in m) touched.add(m.spec.name);
  }
  // Each change was drawn from the world the ones before it left (a node's health change names the state
  // it leaves), so they happen in that order: the drawn moments, sorted, go to the changes in turn. Sorting
  // the changes by their own moments applied a later-drawn change first (cilium, seed 20261220 round 17:
  // "node4 cordoned → none" drawn first, at 4877 ms, after "none → ciliumNotReady", drawn second, at 952 ms)
  // and the API ended with cilium-agent not Ready where the world said healthy: never converged.
  const moments = mutations.map((x) => x.at).sort((a, b) => a - b);
  mutations.forEach((x, i) => (x.at = moments[i]!));
  // A duplicate VIP must lose to its gateway: only gateways this round leaves alone (older, for sure).
  const stableVips = GATEWAY_NAMES.filter((g) => !touched.has(g)).map((g) => world.gateways.get(g)?.vip).filter((v): v is string => v !== undefined);
  const badCount = rng.chance(0.5) ? rng.int(1, 3) : 0;
  const bad = badObjects(rng.fork(), badCount, { stableVips, nodeIps: hosts.nodes, routerIps: hosts.routers }).map((object) => ({ at: rng.int(0, windowMs), object }));
  // Pod changes (Linux data plane: the world has pods) from a generator of their own, so that the rest of
  // the plan is the same as without pods; in time order, so the world ends as planned.
  if (world.pods.size > 0) {
    const podRng = new Rng(seed ^ 0x27d4eb2f);
    const moments = Array.from({ length: podRng.int(0, 3) }, () => podRng.int(0, windowMs)).sort((a, b) => a - b);
    for (const at of moments) {
      const m = randomPodMutation(after, podRng);
      after = applyToWorld(after, m);
      mutations.push({ at, mutation: m });
    }
    mutations.sort((a, b) => a.at - b.at);
  }
  return { plan: { runSeed, round, seed, windowMs, faults, mutations, bad }, after };
}

export function describePlan(p: RoundPlan): string[] {
  return [
    ...p.faults.map((f) => `fault ${describeFault(f)}`),
    ...p.mutations.map((m) => `change @${m.at}ms ${describeMutation(m.mutation)}`),
    ...p.bad.map((b) => `bad @${b.at}ms ${b.object.kind} ${b.object.name}: ${b.object.why} (${b.object.expect})`),
  ];
}

/** What carries over from round to round: the audit log's state and where the previous round stopped. */
export class RunState {
  readonly leader = { holder: '' };
  readonly openInstances = new Map<string, number>();
  /** Accepted renewals by node (only recent ones are kept). */
  readonly renewals = new Map<string, number[]>();
  /** Frames and problems before this moment were checked by an earlier round. */
  checkedUntil = 0;
  /** The last node heard answering alone, by VIP (the answer rules' handover pair). */
  readonly lastSole = new Map<string, { node: string; t: number }>();
  /** When each node was heard answering alone, by VIP then node (the last 30 minutes). */
  readonly soleHistory = new Map<string, Map<string, number[]>>();
  exitsSeen = 0;
  problemsSeen = 0;
  crashesSeen = 0;
}

export interface RoundRecord {
  /** The data plane the round ran with (absent in records of older runs: cilium). */
  dataplane?: DataplaneMode;
  runSeed: number;
  round: number;
  seed: number;
  plan: string[];
  converged: boolean;
  /** Heal → every convergence check holds. */
  convergeMs: number;
  faultPhaseMs: number;
  violations: string[];
  answers: Omit<AnswerSummary, 'violations'>;
  proxy: { injected: Record<number, number>; resets: number };
  leaderChanges: number;
  controllerRestarts: number;
  faultErrors: string[];
  /** Convergence checks still failing 5 s after healing, when it took longer. */
  pendingAt5s?: string[];
  durationMs: number;
  /**
   * The suite process's event-loop delay during the round (ms, max): the fault proxy runs in it, so a
   * busy suite delays every request (a slow convergence with a high value here was the suite's own doing).
   */
  suiteLoopDelayMaxMs: number;
  /** linux: what the converged kernel check compared (pods redirected, verdicts by kind). */
  linux?: LinuxCoverage;
  /** The suite's side of the round (health.ts): where a stall of every proxied client came from (absent in records of older runs). */
  suiteHealth?: SuiteHealth;
}

export interface RoundOptions {
  convergeDeadlineMs: number;
  /** Called with progress lines. */
  log: (line: string) => void;
}

/** Between two convergence checks (a check lists every watched resource once). */
const POLL_MS = 200;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/**
 * Retries an idempotent write until it succeeds or the server refuses the object for good (400, 422:
 * invalid). Anything else is retried: a restarting API server answers 403, 404 (custom resources not
 * served yet) or 503 for a while.
 */
async function persist(what: string, fn: () => Promise<void>, deadline: number): Promise<{ ok: boolean; error?: unknown }> {
  for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
    try {
      await fn();
      return { ok: true };
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 400 || code === 422) return { ok: false, error: err };
      if (Date.now() > deadline) throw new Error(`${what}: still failing at the deadline: ${(err as Error).message}`, { cause: err });
    }
    await sleep(delay);
  }
}

export async function runRound(c: ChaosCluster, world: World, plan: RoundPlan, state: RunState, opts: RoundOptions): Promise<{ record: RoundRecord; world: World; bad: BadState[] }> {
  const t0 = Date.now();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const health = new HealthProbe(loop, c.proxy);
  const rng = new Rng(plan.seed ^ 0x5bd1e995);
  const violations: string[] = [];
  const faultErrors: string[] = [];
  const before = { injected: { ...c.proxy.counters.injected }, resets: c.proxy.counters.resets };
  const writeDeadline = t0 + plan.windowMs + 120_000;
  const nodes = { ipOf: (n: string) => c.node(n).ip };

  // Faults, object changes and bad input, all at their moments.
  const faults = plan.faults.map((f) => runFault(c, f, t0, () => rng.float()).catch((err: unknown) => {
    faultErrors.push(`${describeFault(f)}: ${(err as Error).message}`);
  }));
  let current = world;
  const changes = (async () => {
    for (const { at, mutation } of plan.mutations) {
      await sleep(t0 + at - Date.now());
      current = applyToWorld(current, mutation);
      const after = current;
      const r = await persist(describeMutation(mutation), () => applyMutation(c.client, nodes, mutation, after), writeDeadline);
      if (!r.ok) violations.push(`change ${describeMutation(mutation)} refused: ${(r.error as Error).message}`);
    }
  })();
  const bad: BadState[] = [];
  const badInput = Promise.all(plan.bad.map(async ({ at, object }) => {
    await sleep(t0 + at - Date.now());
    const ref = object.kind === 'EgressGateway' ? GATEWAYS : POLICIES;
    const r = await persist(`bad ${object.name}`, async () => {
      try {
        await c.client.create(ref, object.object);
      } catch (err) {
        // A create whose answer was lost already happened.
        if (!isStatus(err, 409)) throw err;
      }
    }, writeDeadline);
    bad.push({ object, accepted: r.ok });
  }));
  await Promise.all([...faults, changes, badInput]);
  const faultPhaseMs = Date.now() - t0;
  violations.push(...acceptanceViolations(bad));
  await c.heal();
  const healed = Date.now();

  // Convergence.
  const vips = allVips();
  const linux = c.linuxNodes();
  const coverage: LinuxCoverage = { redirectedPods: 0, verdicts: { tunnel: 0, snatHere: 0, drop: 0, notRedirected: 0 } };
  if (linux) linux.coverage = coverage;
  let last: string[] = [];
  let converged = false;
  /** What was still wrong 5 s after healing (what a slow convergence waited for). */
  let pendingAt5s: string[] | undefined;
  while (Date.now() - healed < opts.convergeDeadlineMs) {
    try {
      last = await checkConverged(c.client, c.nodes, (n) => c.addresses(n), current, bad, vips, linux);
      if (last.length === 0) {
        converged = true;
        break;
      }
    } catch (err) {
      last = [`observe: ${(err as Error).message}`];
    }
    if (pendingAt5s === undefined && Date.now() - healed > 5000) pendingAt5s = last.slice(0, 8);
    health.sample();
    await sleep(POLL_MS);
  }
  const convergeMs = Date.now() - healed;
  if (!converged) violations.push(`not converged ${opts.convergeDeadlineMs} ms after healing:`, ...last.map((l) => `  ${l}`));

  // What happened during the round.
  const events = c.audit.read();
  const users = new Set(c.controllers.replicas.map((r) => r.user));
  const holderBefore = state.leader.holder;
  for (const w of writesByNonLeaders(events, users, LEADER_LEASE, state.leader)) {
    violations.push(`leader: ${w.user} wrote (${w.what}) at ${new Date(w.at).toISOString()} while ${w.holder || 'nobody'} held the leader Lease`);
  }
  const leaderChanges = events.filter((e) => e.objectRef?.name === LEADER_LEASE.name && e.objectRef.resource === 'leases' && users.has(e.user.username) && (e.responseStatus?.code ?? 0) < 300 && e.verb !== 'get').map((e) => e.user.username)
    .reduce((n, u, i, all) => n + (i > 0 ? (u !== all[i - 1] ? 1 : 0) : (u !== holderBefore && holderBefore !== '' ? 1 : 0)), 0);
  for (const [node, ts] of acceptedRenewals(events, DEFAULT_NAMESPACE, nodeOfHeartbeatLease)) {
    const kept = (state.renewals.get(node) ?? []).filter((t) => t > t0 - 60_000);
    state.renewals.set(node, [...kept, ...ts]);
  }
  const lifetimes = instanceLifetimes(events, PLURAL_INSTANCES, state.openInstances);
  const frames = c.takeFrames();
  const until = Date.now();
  const answers = checkAnswers(frames, {
    proberIp: OBSERVER_IP,
    probeIntervalMs: VIP_PROBE_MS,
    nodeOfMac: new Map(c.nodes.map((n) => [n.mac, n.name])),
    gatewayOfVip: vips,
    ownerOf: c.hostOwners(),
    fenceAfterMs: DEFAULT_AGENT_OPTIONS.fenceAfterMs,
    slackMs: 100,
    graceMs: 2000,
    renewals: state.renewals,
    lifetimes,
    instanceName,
    lastSole: state.lastSole,
    soleHistory: state.soleHistory,
  }, { from: state.checkedUntil, to: until });
  // An instance lives for minutes at most in a round; half an hour of history is plenty and bounded.
  for (const byNode of state.soleHistory.values()) {
    for (const [node, times] of byNode) byNode.set(node, times.filter((x) => x > until - 30 * 60_000));
  }
  state.checkedUntil = until;
  for (const v of answers.violations) violations.push(`answers/${v.rule}: ${v.by} answered for ${v.ip} at ${new Date(v.t).toISOString()}: ${v.detail}`);

  const exits = c.controllers.exits.slice(state.exitsSeen);
  state.exitsSeen = c.controllers.exits.length;
  for (const e of exits.filter((x) => !x.expected)) violations.push(`crash: controller ${e.replica} exited by itself (code ${e.code}, signal ${e.signal})`);
  const problems = c.controllers.problems.slice(state.problemsSeen);
  state.problemsSeen = c.controllers.problems.length;
  for (const p of problems.filter((x) => x.level >= 60 || x.msg === 'core reconcile failed')) violations.push(`crash: controller ${p.replica}: ${p.msg}: ${p.line.slice(0, 400)}`);
  const crashes = c.agentCrashes.slice(state.crashesSeen);
  state.crashesSeen = c.agentCrashes.length;
  for (const a of crashes) violations.push(`crash: agent of ${a.node} exited by itself (code ${a.code}, signal ${a.signal})`);

  // The bad objects leave with the round.
  for (const b of bad.filter((x) => x.accepted)) {
    await persist(`delete ${b.object.name}`, () => deleteIfExists(c.client, b.object.kind === 'EgressGateway' ? GATEWAYS : POLICIES, b.object.name), Date.now() + 60_000);
  }

  const injected: Record<number, number> = {};
  for (const [code, n] of Object.entries(c.proxy.counters.injected)) injected[Number(code)] = n - (before.injected[Number(code)] ?? 0);
  const { violations: _answerViolations, ...answerStats } = answers;
  const h = health.finish();
  const record: RoundRecord = {
    dataplane: c.dataplane,
    runSeed: plan.runSeed,
    round: plan.round,
    seed: plan.seed,
    plan: describePlan(plan),
    converged,
    convergeMs,
    faultPhaseMs,
    violations,
    answers: answerStats,
    proxy: { injected, resets: c.proxy.counters.resets - before.resets },
    leaderChanges,
    controllerRestarts: exits.length,
    faultErrors,
    ...(pendingAt5s ? { pendingAt5s } : {}),
    durationMs: Date.now() - t0,
    suiteLoopDelayMaxMs: Math.round(loop.max / 1e6),
    suiteHealth: h,
    ...(linux && converged ? { linux: coverage } : {}),
  };
  loop.disable();
  opts.log(`round ${plan.round} (seed ${plan.seed}, ${c.dataplane}): ${converged ? `converged ${convergeMs} ms after healing` : 'NOT CONVERGED'}, ${violations.length} violation(s), suite loop delay max ${record.suiteLoopDelayMaxMs} ms (p99 ${h.loopDelayP99Ms}), rss ${h.rssMb} MB, proxy ≤${h.proxyConnectionsMax} conns/${h.proxyBufferedKbMax} KiB, listen overflows ${h.listenOverflows ?? '?'}, load ${h.loadAvg1}${record.linux ? `, kernels: ${record.linux.redirectedPods} pods redirected, verdicts ${JSON.stringify(record.linux.verdicts)}` : ''}`);
  return { record, world: current, bad };
}
