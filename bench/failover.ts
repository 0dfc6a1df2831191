// Failover benchmark, side by side on one netns LAN (issue 10): egressgw at its defaults, egressgw tuned
// for speed, the reference path (Node NotReady after the grace period), and keepalived with 1 s and
// 100 ms adverts. One test environment (src/testenv/env.ts: our API server behind a fault proxy, the
// controller, agents in node namespaces) holds every group; keepalived runs on extra LAN hosts.
//
// An observer host on the LAN asks "who has VIP?" for every group's VIP (every 20 ms; the reference
// groups every 100 ms) and records every ARP frame for a VIP: that is where every number comes from
// (bench/failover/measure.ts):
//   failure → new owner answering   the first frame for the VIP from another host after the failure;
//   dual-owner time                 questions answered by two hosts at once × the probe interval,
//                                   summed over the rounds of a row (failure through recovery);
//   false failovers                 owner changes during a window of API latency spikes (the fault
//                                   proxy delays every request by 300 ms for 1 s, every 2–8 s) with no
//                                   failure injected; for egressgw also the controller's failovers and
//                                   the agents' fences in that window.
// Each round: wait until the group is settled (one owner, every standby ready to take over), fail the
// owner, wait for another host to answer, watch `observeMs` more, recover the failed host, wait until
// settled again. Failure kinds: kill -9 and SIGSTOP of the agent/daemon, API cut (the node's management
// link down, its LAN up), uplink down (its LAN link down); keepalived has no API, so no API cut.
//
// Phases, to bound the wall time: (A) egressgw rows, one round at a time, kinds in rotation;
// (A2) keepalived 100 ms one at a time, keepalived 1 s groups in parallel (seconds-scale timings);
// (B) the spike window, with the reference rounds (40 s each) running in parallel groups meanwhile.

import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { heartbeatLeaseName } from '../src/api/names.ts';
import type { PassInfo } from '../src/controller/controller.ts';
import { startTestEnv, type TestEnv, type TestEnvNode } from '../src/testenv/env.ts';
import type { ArpEvent, ArpProbe, Capture } from '../src/testenv/observe.ts';
import { poll } from '../src/testenv/poll.ts';
import { dist, renderTable, type Dist } from './stats.ts';
import { EgressgwGroup, FAILURE_KINDS, KIND_LABEL, KeepalivedGroup, ReferenceGroup, type FailoverGroup, type FailureKind } from './failover/groups.ts';
import { Keepalived, keepalivedAvailable } from './failover/keepalived.ts';
import { measureRound, ownerChanges, silences } from './failover/measure.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const ROWS = ['defaults', 'tuned', 'reference', 'keepalived-1s', 'keepalived-100ms'] as const;
export type RowId = (typeof ROWS)[number];

/** Tuned for speed: detection in 400–500 ms, at the price of riding out API spikes (fence − renew = 300 ms). */
export const TUNED_ARGS = ['--renew-interval', '100ms', '--fence-after', '400ms', '--lease-duration', '500ms'];
const REFERENCE_ARGS = ['--no-heartbeat', '--refresh-interval', '900ms', '--address-lifetime', '2s'];
const GROUP_LABEL = 'egressgw.bench/group';
const OBSERVER_IP = '198.18.0.250';

export interface FailoverBenchOptions {
  /** Failovers per failure kind per row (default 50). */
  rounds?: number;
  /** Rows to run (default all). */
  rows?: readonly RowId[];
  /**
   * Rounds per failure kind in phases A and A2 (egressgw and keepalived rows; default `rounds`). 0 runs only
   * phase B (the spike window and the reference rounds), for a run whose phase B must be repeated on its own.
   */
  phaseARounds?: number;
  /** Length of the API latency spike window, minutes (default 10; 0 skips it). */
  spikeMinutes?: number;
  spikeDelayMs?: number;
  /** How long a spike lasts (default 1000 ms) and the pause between spikes (default 2000–8000 ms). */
  spikeDurationMs?: number;
  spikeGapMs?: { min: number; max: number };
  /** Seed of the spike schedule (the gaps between spikes; default 10): the same seed, the same schedule. */
  spikeSeed?: number;
  /** Parallel groups for the reference rounds (default 12) and the keepalived 1 s rounds (default 4). */
  referenceGroups?: number;
  keepalivedGroups?: number;
  /** Node-monitor grace period of the reference path (default 40 s). */
  referenceGraceMs?: number;
  /** How long a reference round waits for a failover that never comes (uplink down; default 60 s). */
  referenceUplinkWaitMs?: number;
  /** How long each round keeps watching after the new owner answered, before recovering (default 1000 ms). */
  observeMs?: number;
  /**
   * JSON output (default bench/results/failover.json); '' to skip writing. Written after every round and
   * phase with `complete: false`, and at the end with `complete: true`: a run that stops keeps what it measured.
   */
  outFile?: string;
  log?: (line: string) => void;
}

export interface RoundRecord {
  row: string;
  group: string;
  kind: FailureKind;
  from: string;
  to: string | undefined;
  /** Failure → the new owner's first frame; undefined: no other host answered within the wait. */
  failoverMs: number | undefined;
  /** Failure → the controller pass that elected another node (our controller's rows only). */
  detectionMs?: number;
  gapMs: number | undefined;
  dualOwnerMs: number;
  lateOldFrames: number;
  roundMs: number;
  /** The round could not be completed (the group did not settle, a step failed): not in the statistics. */
  error?: string;
}

export interface KindResult {
  kind: FailureKind;
  label: string;
  rounds: number;
  /** Rounds that could not be completed (see RoundRecord.error). */
  errors: number;
  notDetected: number;
  failover?: Dist;
  gap?: Dist;
  dualOwnerMsSum: number;
  dualOwnerRounds: number;
  lateOldFrames: number;
}

export interface SpikeResult {
  minutes: number;
  /** Spikes injected during the window (the proxy child's record) and their total length. */
  spikes: number;
  spikeMs: number;
  ownerChanges: number;
  /** The row's idle group did not settle before the window: nothing measured for it (the other rows were). */
  error?: string;
  /** Stretches with nobody answering for the VIP (more than 3 probe intervals), and their total ms. */
  silences: number;
  silentMs: number;
  controllerFailovers?: number;
  agentFences?: number;
}

export interface RowResult {
  row: RowId;
  label: string;
  settings: string;
  probeIntervalMs: number;
  kinds: KindResult[];
  spikes?: SpikeResult;
}

export type Phase = 'setup' | 'A: egressgw rows' | 'A2: keepalived rows' | 'B: spike window + reference rounds' | 'done';

export interface FailoverBenchResults {
  /** false while the run is going on (or if it stopped): what is in `rows` is what was measured so far. */
  complete: boolean;
  /** The phase the run was in when this file was written. */
  phase: Phase;
  /** The run's error, if it stopped on one. */
  error?: string;
  when: string;
  wallSeconds: number;
  machine: { cpus: number; cpuModel: string; loadAvgStart: number[]; loadAvgEnd: number[]; node: string; keepalived?: string };
  setup: Record<string, unknown>;
  rows: RowResult[];
  /** Heartbeat writes of the default agents, measured in the API server's audit log during the spike window. */
  apiWrites?: { leaseWritesPerNodePerSecond: number; per100NodesPerSecond: number; overSeconds: number; nodes: number };
  /** The spike window's schedule as the proxy child ran it: offsets of each spike's start from the window's start. */
  spikeSchedule?: { seed: number; count: number; totalSpikeMs: number; startOffsetsMs: number[] };
  targets: { p99Ms: number; defaultsP99Met: boolean; defaultsDualOwnerMs: number; defaultsFalseFailovers: number | undefined; met: boolean };
  rounds: RoundRecord[];
}

interface Topology {
  env: TestEnv;
  groups: Map<RowId, FailoverGroup[]>;
  /** Idle groups for the spike window, one per row. */
  spikeGroups: Map<RowId, FailoverGroup>;
  daemons: Keepalived[];
  probeIntervalMs: Map<string, number>;
  activeByGateway: Map<string, string[]>;
  /** Controller passes that chose a new target node for a gateway: when (Date.now()) and which node. */
  electionsByGateway: Map<string, Array<{ at: number; target: string }>>;
  /** The row a gateway node belongs to. */
  groupOfNode(n: { name: string }): RowId | undefined;
  /**
   * Starts the reference rows' agents and creates their gateways (phase B only: idle, their agents
   * would load the machine while the other rows are timed).
   */
  activateReference(): Promise<void>;
  close(): Promise<void>;
}

const ROW_LABEL: Record<RowId, string> = {
  defaults: 'egressgw defaults',
  tuned: 'egressgw tuned for speed',
  reference: 'reference path (Node NotReady)',
  'keepalived-1s': 'keepalived, 1 s adverts',
  'keepalived-100ms': 'keepalived, 100 ms adverts',
};

export async function runFailoverBench(opts: FailoverBenchOptions = {}): Promise<FailoverBenchResults> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const o = {
    rounds: opts.rounds ?? 50,
    rows: opts.rows ?? ROWS,
    spikeMinutes: opts.spikeMinutes ?? 10,
    spikeDelayMs: opts.spikeDelayMs ?? 300,
    spikeDurationMs: opts.spikeDurationMs ?? 1000,
    spikeGapMs: opts.spikeGapMs ?? { min: 2000, max: 8000 },
    spikeSeed: opts.spikeSeed ?? 10,
    referenceGroups: opts.referenceGroups ?? 12,
    keepalivedGroups: opts.keepalivedGroups ?? 4,
    referenceGraceMs: opts.referenceGraceMs ?? 40_000,
    referenceUplinkWaitMs: opts.referenceUplinkWaitMs ?? 60_000,
    observeMs: opts.observeMs ?? 1000,
    phaseARounds: opts.phaseARounds ?? opts.rounds ?? 50,
  };
  const started = now();
  const loadAvgStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const keepalived = o.rows.some((r) => r.startsWith('keepalived')) ? await keepalivedAvailable() : undefined;
  const rows = o.rows.filter((r) => !r.startsWith('keepalived') || keepalived !== undefined);
  if (rows.length < o.rows.length) log('keepalived is not installed (Debian package keepalived): its rows are skipped');

  const records: RoundRecord[] = [];
  const state: RunState = { o, rows, started, loadAvgStart, keepalived, records, phase: 'setup' };
  const outFile = opts.outFile ?? join(HERE, 'results', 'failover.json');
  // Written after every round and phase: an hour of phase A survives a phase B that fails.
  const save = (complete = false): FailoverBenchResults => {
    const r = assemble(state, complete);
    if (outFile !== '') writeJsonAtomically(outFile, r);
    return r;
  };
  let topo: Topology | undefined;
  let observer: Awaited<ReturnType<typeof startObserver>> | undefined;
  try {
    topo = await buildTopology(rows, o, log);
    const t = topo;
    observer = await startObserver(t);
    // A round that cannot complete is recorded as an error and the run goes on; a group that keeps
    // failing is given up (its remaining rounds are errors too), so one stuck group cannot sink an hour.
    const failures = new Map<FailoverGroup, number>();
    const round = async (g: FailoverGroup, kind: FailureKind, i: number): Promise<void> => {
      let r: RoundRecord;
      if ((failures.get(g) ?? 0) >= 3) return;
      try {
        r = await runRound(t, g, kind, o.observeMs);
        failures.set(g, 0);
      } catch (err) {
        failures.set(g, (failures.get(g) ?? 0) + 1);
        const error = err instanceof Error ? err.message : String(err);
        records.push({ row: g.row, group: g.name, kind, from: '?', to: undefined, failoverMs: undefined, gapMs: undefined, dualOwnerMs: 0, lateOldFrames: 0, roundMs: 0, error });
        save();
        log(`${g.row.padEnd(16)} ${g.name.padEnd(8)} ${KIND_LABEL[kind].padEnd(16)} #${String(i).padStart(2)}: ERROR ${error.slice(0, 300)}`);
        return;
      }
      records.push(r);
      save();
      log(`${g.row.padEnd(16)} ${g.name.padEnd(8)} ${KIND_LABEL[kind].padEnd(16)} #${String(i).padStart(2)}: ${r.from} → ${r.to ?? '(none)'}  ` +
        `${r.failoverMs === undefined ? 'NOT DETECTED' : `${Math.round(r.failoverMs)} ms`}${r.detectionMs !== undefined ? ` (elected +${Math.round(r.detectionMs)})` : ''}  ` +
        `dual ${r.dualOwnerMs} ms  (round ${Math.round(r.roundMs / 100) / 10} s)`);
    };
    const phase = (p: Phase): void => {
      state.phase = p;
      save();
      log(`failover bench: phase ${p} (${Math.round((now() - started) / 1000)} s in)`);
    };
    const groupsOf = (...rs: RowId[]): FailoverGroup[] => rs.flatMap((r) => t.groups.get(r) ?? []);
    // Phase A: egressgw, one round at a time, kinds in rotation (slow drifts of the machine hit all kinds alike).
    phase('A: egressgw rows');
    await observer.observe(groupsOf('defaults', 'tuned'));
    for (const g of groupsOf('defaults', 'tuned')) {
      for (let i = 1; i <= o.phaseARounds; i++) for (const kind of g.kinds) await round(g, kind, i);
    }
    // Phase A2: keepalived; 100 ms adverts one at a time, 1 s adverts in parallel groups.
    phase('A2: keepalived rows');
    await observer.observe(groupsOf('keepalived-100ms', 'keepalived-1s'));
    for (const g of groupsOf('keepalived-100ms')) for (let i = 1; i <= o.phaseARounds; i++) for (const kind of g.kinds) await round(g, kind, i);
    await inParallel(groupsOf('keepalived-1s'), o.phaseARounds, round);
    // Phase B: the spike window, and meanwhile the reference rounds in parallel groups.
    phase('B: spike window + reference rounds');
    if (rows.includes('reference')) await t.activateReference();
    await observer.observe([...groupsOf('reference'), ...t.spikeGroups.values()]);
    const reference = inParallel(groupsOf('reference'), o.rounds, round);
    try {
      if (o.spikeMinutes > 0) {
        Object.assign(state, await spikeWindow(t, o, log));
        save();
      }
    } finally {
      // The reference rounds finish (and are saved) before anything is torn down, even if the window failed.
      await reference;
    }
    state.phase = 'done';
  } catch (err) {
    state.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    save();
    throw err;
  } finally {
    observer?.stop();
    await topo?.close();
  }
  const out = save(true);
  log(table(out));
  return out;
}

interface RunState {
  o: Required<Pick<FailoverBenchOptions, 'rounds' | 'spikeMinutes' | 'spikeDelayMs' | 'spikeDurationMs' | 'spikeGapMs' | 'spikeSeed' | 'referenceGroups' | 'keepalivedGroups' | 'referenceGraceMs' | 'referenceUplinkWaitMs' | 'observeMs' | 'phaseARounds'>>;
  rows: readonly RowId[];
  started: number;
  loadAvgStart: number[];
  keepalived: string | undefined;
  records: RoundRecord[];
  phase: Phase;
  error?: string;
  spikes?: Map<RowId, SpikeResult>;
  apiWrites?: FailoverBenchResults['apiWrites'];
  spikeSchedule?: FailoverBenchResults['spikeSchedule'];
}

/** The results from what was measured so far (every row, its rounds so far; the targets from those). */
function assemble(st: RunState, complete: boolean): FailoverBenchResults {
  const { o, records } = st;
  const results: RowResult[] = st.rows.map((row) => {
    const rowRecords = records.filter((r) => r.row === row);
    const kinds = (row.startsWith('keepalived') ? ['kill', 'stop', 'uplink'] as FailureKind[] : [...FAILURE_KINDS]).map((kind) => kindResult(kind, rowRecords.filter((r) => r.kind === kind)));
    const spikes = st.spikes?.get(row);
    return { row, label: ROW_LABEL[row], settings: rowSettings(row, o), probeIntervalMs: row === 'reference' ? 100 : 20, kinds, ...(spikes ? { spikes } : {}) };
  });
  const defaults = results.find((r) => r.row === 'defaults');
  const defaultsP99Met = defaults !== undefined && defaults.kinds.every((k) => k.rounds > 0 && k.notDetected === 0 && (k.failover?.p99 ?? Infinity) <= 1000);
  const defaultsDual = defaults?.kinds.reduce((a, k) => a + k.dualOwnerMsSum, 0) ?? NaN;
  const defaultsFalse = defaults?.spikes && defaults.spikes.error === undefined ? falseFailovers(defaults.spikes) : undefined;
  return {
    complete,
    phase: st.phase,
    ...(st.error !== undefined ? { error: st.error } : {}),
    when: new Date().toISOString(),
    wallSeconds: Math.round((now() - st.started) / 1000),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', loadAvgStart: st.loadAvgStart, loadAvgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100), node: process.version, ...(st.keepalived ? { keepalived: st.keepalived } : {}) },
    setup: {
      roundsPerKindPerRow: o.rounds,
      phaseARoundsPerKind: o.phaseARounds,
      observeMsAfterTakeover: o.observeMs,
      spike: { minutes: o.spikeMinutes, delayMs: o.spikeDelayMs, durationMs: o.spikeDurationMs, gapMs: o.spikeGapMs, seed: o.spikeSeed, direction: 'requests (client → API server)' },
      referenceGroups: o.referenceGroups,
      keepalivedGroups: o.keepalivedGroups,
      referenceGraceMs: o.referenceGraceMs,
      referenceUplinkWaitMs: o.referenceUplinkWaitMs,
      observer: 'ARP requests for every VIP from a LAN host (20 ms; reference VIPs 100 ms); all API traffic through a TCP fault proxy in a child process of its own (src/testenv/faultproxy-process.ts)',
    },
    rows: results,
    ...(st.apiWrites ? { apiWrites: st.apiWrites } : {}),
    ...(st.spikeSchedule ? { spikeSchedule: st.spikeSchedule } : {}),
    targets: {
      p99Ms: 1000,
      defaultsP99Met,
      defaultsDualOwnerMs: defaultsDual,
      defaultsFalseFailovers: defaultsFalse,
      met: defaultsP99Met && defaultsDual === 0 && defaultsFalse === 0,
    },
    rounds: records,
  };
}

/**
 * A false failover is the VIP changing hands, or its owner going silent (fenced), with nothing failed.
 * For egressgw rows the controller's own failovers count too (one may not show as an owner change).
 */
export function falseFailovers(s: SpikeResult): number {
  return Math.max(s.ownerChanges, s.controllerFailovers ?? 0) + s.silences;
}

/** Write to a temporary file beside it and rename: a reader (or a crash) never sees half a file. */
function writeJsonAtomically(file: string, data: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n');
  renameSync(tmp, file);
}

function rowSettings(row: RowId, o: { referenceGraceMs: number }): string {
  switch (row) {
    case 'defaults': return 'agent defaults: renew 150 ms, fence-after 650 ms, lease 800 ms';
    case 'tuned': return `agent ${TUNED_ARGS.join(' ')}`;
    case 'reference': return `no heartbeat; Node NotReady ${o.referenceGraceMs / 1000} s after the failure (not for uplink down)`;
    case 'keepalived-1s': return 'VRRPv3, advert_int 1, equal priorities, nopreempt';
    case 'keepalived-100ms': return 'VRRPv3, advert_int 0.1, equal priorities, nopreempt';
  }
}

function kindResult(kind: FailureKind, all: readonly RoundRecord[]): KindResult {
  const rs = all.filter((r) => r.error === undefined);
  const answered = rs.filter((r) => r.failoverMs !== undefined);
  return {
    kind,
    label: KIND_LABEL[kind],
    rounds: rs.length,
    errors: all.length - rs.length,
    notDetected: rs.length - answered.length,
    ...(answered.length > 0 ? { failover: dist(answered.map((r) => r.failoverMs!)), gap: dist(answered.map((r) => r.gapMs!)) } : {}),
    dualOwnerMsSum: rs.reduce((a, r) => a + r.dualOwnerMs, 0),
    dualOwnerRounds: rs.filter((r) => r.dualOwnerMs > 0).length,
    lateOldFrames: rs.reduce((a, r) => a + r.lateOldFrames, 0),
  };
}

/** Runs `rounds` rounds of every kind on each group, the groups in parallel. */
async function inParallel(groups: readonly FailoverGroup[], rounds: number, round: (g: FailoverGroup, k: FailureKind, i: number) => Promise<void>): Promise<void> {
  if (groups.length === 0) return;
  const jobs: Array<{ kind: FailureKind; i: number }> = [];
  for (let i = 1; i <= rounds; i++) for (const kind of groups[0]!.kinds) jobs.push({ kind, i });
  await Promise.all(groups.map(async (g) => {
    for (let j = jobs.shift(); j !== undefined; j = jobs.shift()) await round(g, j.kind, j.i);
  }));
}

async function runRound(topo: Topology, g: FailoverGroup, kind: FailureKind, observeMs: number): Promise<RoundRecord> {
  const owner = await g.settle(120_000);
  g.frames.length = 0;
  await poll(`the observer to hear ${owner.name} answer for ${g.vip}`, () => g.frames.some((f) => f.senderMac === owner.mac), 10_000, { intervalMs: 10 });
  const tFail = now();
  await g.fail(owner, kind);
  const others = new Set(g.members.filter((m) => m.mac !== owner.mac).map((m) => m.mac));
  const answered = await poll('another host to answer', () => g.frames.some((f) => f.t > tFail && others.has(f.senderMac)), g.answerDeadlineMs(kind), { intervalMs: 5 })
    .then(() => true, () => false);
  if (answered) await sleep(observeMs);
  await g.recover(owner, kind);
  await g.settle(120_000);
  const tEnd = now();
  const m = measureRound(g.frames, { vip: g.vip, oldMac: owner.mac, proberIp: OBSERVER_IP, probeIntervalMs: topo.probeIntervalMs.get(g.vip) ?? 20, tFail, tEnd });
  const elected = topo.electionsByGateway.get(g.name)?.find((e) => e.at >= tFail - 50 && e.target !== owner.name);
  return {
    row: g.row,
    group: g.name,
    kind,
    from: owner.name,
    to: g.members.find((x) => x.mac === m.newMac)?.name,
    failoverMs: m.failoverMs,
    ...(elected ? { detectionMs: elected.at - tFail } : {}),
    gapMs: m.gapMs,
    dualOwnerMs: m.dualOwnerMs,
    lateOldFrames: m.lateOldFrames,
    roundMs: tEnd - tFail,
  };
}

/**
 * One observer host on the LAN; observe(groups) asks for those groups' VIPs (only: every node's agent
 * receives each broadcast question, so idle groups are not asked) and routes each frame to its group.
 */
async function startObserver(topo: Topology): Promise<{ observe(groups: readonly FailoverGroup[]): Promise<void>; stop(): void }> {
  const obs = await topo.env.net.addLanHost('observer', OBSERVER_IP);
  let capture: Capture | undefined;
  return {
    async observe(groups) {
      capture?.stop();
      const byVip = new Map<string, FailoverGroup[]>();
      for (const g of groups) byVip.set(g.vip, [...new Set([...(byVip.get(g.vip) ?? []), g])]);
      const probes: ArpProbe[] = [...byVip.keys()].map((ip) => ({ ip, senderMac: obs.mac, senderIp: obs.ip, intervalMs: topo.probeIntervalMs.get(ip) ?? 20 }));
      capture = await topo.env.captureArp(obs.ns, obs.ifname, probes, (e: ArpEvent) => {
        for (const g of byVip.get(e.senderIp) ?? []) g.frames.push(e);
      });
    },
    stop: () => capture?.stop(),
  };
}

/** The spike window: idle groups, API requests delayed on a seeded schedule; what changed hands meanwhile. */
async function spikeWindow(topo: Topology, o: { spikeMinutes: number; spikeDelayMs: number; spikeDurationMs: number; spikeGapMs: { min: number; max: number }; spikeSeed: number }, log: (l: string) => void):
  Promise<{ spikes: Map<RowId, SpikeResult>; apiWrites: FailoverBenchResults['apiWrites']; spikeSchedule: FailoverBenchResults['spikeSchedule'] }> {
  const { env } = topo;
  // A group that cannot settle is reported for its row; the window runs for the others.
  const unsettled = new Map<RowId, string>();
  for (const [row, g] of topo.spikeGroups) {
    await g.settle(120_000).catch((err: unknown) => unsettled.set(row, err instanceof Error ? err.message : String(err)));
  }
  const idle = [...topo.spikeGroups.entries()].filter(([row]) => !unsettled.has(row));
  const defaultsNodes = env.nodes.filter((n) => topo.groupOfNode(n) === 'defaults');
  const leaseWrites = () => countLeaseWrites(env, defaultsNodes.map((n) => n.name));
  const writes0 = leaseWrites();
  const fences0 = new Map(env.nodes.map((n) => [n.name, n.agent.countLogged('fencing:')]));
  const active0 = new Map([...topo.activeByGateway].map(([gw, seq]) => [gw, seq.length]));
  for (const [, g] of idle) g.frames.length = 0;
  const t0 = now();
  log(`spike window: ${o.spikeMinutes} min of ${o.spikeDelayMs} ms request delays (${o.spikeDurationMs} ms long, every ${o.spikeGapMs.min / 1000}–${o.spikeGapMs.max / 1000} s, seed ${o.spikeSeed})`);
  // The proxy runs in a child process: its spikes keep their schedule however busy this loop is.
  const schedule = await env.proxyProcess!.spikes({ delayMs: o.spikeDelayMs, durationMs: o.spikeDurationMs, gapMs: o.spikeGapMs, seed: o.spikeSeed });
  await sleep(o.spikeMinutes * 60_000);
  const record = await schedule.stop();
  const seconds = (now() - t0) / 1000;
  const writes = leaseWrites() - writes0;
  const spikeMs = Math.round(record.reduce((a, x) => a + (x.end - x.start), 0));
  const spikes = new Map<RowId, SpikeResult>();
  for (const [row, g] of idle) {
    const quiet = silences(g.frames, g.vip, topo.probeIntervalMs.get(g.vip) ?? 20);
    const r: SpikeResult = { minutes: o.spikeMinutes, spikes: record.length, spikeMs, ownerChanges: ownerChanges(g.frames, g.vip), silences: quiet.count, silentMs: quiet.totalMs };
    if (row === 'defaults' || row === 'tuned') {
      const nodes = env.nodes.filter((n) => topo.groupOfNode(n) === row);
      r.agentFences = nodes.reduce((a, n) => a + n.agent.countLogged('fencing:') - (fences0.get(n.name) ?? 0), 0);
      r.controllerFailovers = (topo.activeByGateway.get(g.name)?.length ?? 0) - (active0.get(g.name) ?? 0);
    }
    spikes.set(row, r);
    log(`spike window, ${row}: ${JSON.stringify(r)}`);
  }
  for (const [row, error] of unsettled) {
    spikes.set(row, { minutes: o.spikeMinutes, spikes: record.length, spikeMs, error, ownerChanges: NaN, silences: NaN, silentMs: NaN });
    log(`spike window, ${row}: NOT MEASURED, its group did not settle: ${error.slice(0, 300)}`);
  }
  const perNode = defaultsNodes.length > 0 ? writes / seconds / defaultsNodes.length : NaN;
  return {
    spikes,
    apiWrites: defaultsNodes.length > 0
      ? { leaseWritesPerNodePerSecond: Math.round(perNode * 100) / 100, per100NodesPerSecond: Math.round(perNode * 100), overSeconds: Math.round(seconds), nodes: defaultsNodes.length }
      : undefined,
    spikeSchedule: { seed: o.spikeSeed, count: record.length, totalSpikeMs: spikeMs, startOffsetsMs: record.map((x) => Math.round(x.start - t0)) },
  };
}

function countLeaseWrites(env: TestEnv, nodes: readonly string[]): number {
  const names = new Set(nodes.map(heartbeatLeaseName));
  return env.cluster.auditEvents().filter((e) => e.stage === 'ResponseComplete' && (e.verb === 'patch' || e.verb === 'update') &&
    e.objectRef?.resource === 'leases' && names.has(e.objectRef.name ?? '')).length;
}

async function buildTopology(rows: readonly RowId[], o: { referenceGroups: number; keepalivedGroups: number; referenceGraceMs: number; referenceUplinkWaitMs: number }, log: (l: string) => void): Promise<Topology> {
  // Gateway nodes: 3 per egressgw row, 2 per reference group (+1 idle group for the spike window).
  const plan: Array<{ row: RowId; group: string; size: number }> = [];
  if (rows.includes('defaults')) plan.push({ row: 'defaults', group: 'defaults', size: 3 });
  if (rows.includes('tuned')) plan.push({ row: 'tuned', group: 'tuned', size: 3 });
  if (rows.includes('reference')) for (let i = 0; i <= o.referenceGroups; i++) plan.push({ row: 'reference', group: `ref${i}`, size: 2 });
  const nodeGroup = new Map<string, { row: RowId; group: string }>();
  let n = 0;
  for (const p of plan) for (let i = 0; i < p.size; i++) nodeGroup.set(`node${++n}`, { row: p.row, group: p.group });
  const activeByGateway = new Map<string, string[]>();
  const electionsByGateway = new Map<string, Array<{ at: number; target: string }>>();
  log(`failover bench: ${n} gateway nodes, rows ${rows.join(', ')}`);
  const env = await startTestEnv({
    // EGRESSGW_BENCH_KEEP=1 keeps the controller's and agents' logs (their directory is printed).
    keepLogs: Boolean(process.env.EGRESSGW_BENCH_KEEP),
    nodes: Math.max(n, 1),
    // In a child process: an in-process proxy stalled under load (every agent's requests timed out).
    apiProxy: 'process',
    agentArgsFor: (node) => {
      const row = nodeGroup.get(node.name)?.row;
      return row === 'tuned' ? TUNED_ARGS : row === 'reference' ? REFERENCE_ARGS : [];
    },
    startAgentFor: (node) => nodeGroup.get(node.name)?.row !== 'reference',
    // The bench follows each gateway's active node, to count the controller's failovers.
    onPass: (p: PassInfo) => {
      for (const [gw, g] of p.desired.gateways) {
        const seq = activeByGateway.get(gw) ?? [];
        if (g.active && seq.at(-1) !== g.active) seq.push(g.active);
        activeByGateway.set(gw, seq);
        const el = electionsByGateway.get(gw) ?? [];
        if (g.target && el.at(-1)?.target !== g.target) el.push({ at: p.at, target: g.target });
        electionsByGateway.set(gw, el);
      }
    },
    log: pino({ level: 'silent' }),
  });
  const dir = mkdtempSync(join(os.tmpdir(), 'egressgw-keepalived-'));
  const daemons: Keepalived[] = [];
  const groups = new Map<RowId, FailoverGroup[]>();
  const spikeGroups = new Map<RowId, FailoverGroup>();
  const probeIntervalMs = new Map<string, number>();
  const referenceGateways: Array<{ group: string; ip: string }> = [];
  const add = (row: RowId, g: FailoverGroup, interval = 20) => {
    groups.set(row, [...(groups.get(row) ?? []), g]);
    probeIntervalMs.set(g.vip, interval);
  };
  try {
    const nodesOf = (group: string): TestEnvNode[] => env.nodes.filter((x) => nodeGroup.get(x.name)?.group === group);
    for (const x of env.nodes) {
      const ng = nodeGroup.get(x.name);
      if (ng) await env.client.mergePatch({ group: '', version: 'v1', plural: 'nodes' }, x.name, { metadata: { labels: { [GROUP_LABEL]: ng.group } } });
    }
    let vip = 100;
    for (const p of plan.filter((q, i, all) => all.findIndex((r) => r.group === q.group) === i)) {
      const ip = `198.18.0.${vip++}`;
      if (p.row === 'reference') referenceGateways.push({ group: p.group, ip });
      else await env.createVipGateway(p.group, ip, ['eth0'], { [GROUP_LABEL]: p.group });
      if (p.row === 'reference') {
        const g = new ReferenceGroup(env, p.group, ip, nodesOf(p.group), { graceMs: o.referenceGraceMs, uplinkWaitMs: o.referenceUplinkWaitMs });
        if (p.group === 'ref0') {
          spikeGroups.set('reference', g);
          probeIntervalMs.set(ip, 100);
        } else add('reference', g, 100);
      } else {
        const g = new EgressgwGroup(env, p.row, p.group, ip, nodesOf(p.group));
        add(p.row, g);
        spikeGroups.set(p.row, g);
      }
    }
    // keepalived: 2 hosts per group on the LAN, 198.18.0.200 and up; VIPs 198.18.0.150 and up.
    let host = 200;
    let kvip = 150;
    for (const [row, advert, count] of [['keepalived-100ms', 0.1, 1], ['keepalived-1s', 1, o.keepalivedGroups]] as const) {
      if (!rows.includes(row)) continue;
      for (let i = 0; i < count; i++) {
        const ip = `198.18.0.${kvip}`;
        const ds: Keepalived[] = [];
        for (let h = 0; h < 2; h++) {
          const lan = await env.net.addLanHost(`k${host}`, `198.18.0.${host}`);
          ds.push(new Keepalived(env.net, { name: `k${host}`, ...lan }, { advertSeconds: advert, routerId: kvip, vip: ip, dir }));
          host++;
        }
        kvip++;
        for (const d of ds) d.start();
        daemons.push(...ds);
        const g = new KeepalivedGroup(env, row, `vrrp${kvip - 1}`, ip, ds);
        add(row, g);
        if (i === 0) spikeGroups.set(row, g);
      }
    }
  } catch (err) {
    await env.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    env,
    groups,
    spikeGroups,
    daemons,
    probeIntervalMs,
    activeByGateway,
    electionsByGateway,
    groupOfNode: (x) => nodeGroup.get(x.name)?.row,
    async activateReference() {
      for (const x of env.nodes) {
        if (nodeGroup.get(x.name)?.row !== 'reference') continue;
        await ReferenceGroup.standInLease(env, x.name);
        env.startAgent(x);
      }
      for (const r of referenceGateways) await env.createVipGateway(r.group, r.ip, ['eth0'], { [GROUP_LABEL]: r.group });
    },
    async close() {
      for (const g of [...groups.values()].flat()) g.close();
      for (const d of daemons) await d.kill().catch(() => undefined);
      await env.stop();
      if (!process.env.EGRESSGW_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

const fmt = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : `${Math.round(v)}`);

/** The README table: one line per row and failure kind; works on a partial file (a run going on or stopped) too. */
export function table(r: FailoverBenchResults): string {
  const lines: string[][] = [];
  for (const row of r.rows) {
    const s = row.spikes;
    const spikeText = s === undefined ? '—'
      : s.error !== undefined ? 'not measured (its group did not settle)'
      : `${falseFailovers(s)} (owner changes ${s.ownerChanges}${s.controllerFailovers !== undefined ? `, controller ${s.controllerFailovers}, fences ${s.agentFences}` : ''}` +
        `${s.silences > 0 ? `; ${s.silences} silences, ${s.silentMs} ms` : ''})`;
    row.kinds.forEach((k, i) => {
      const f = k.failover;
      lines.push([
        i === 0 ? row.label : '',
        k.label,
        `${k.rounds}${k.errors > 0 ? ` (+${k.errors} errors)` : ''}`,
        f ? `${fmt(f.p50)} / ${fmt(f.p99)} / ${fmt(f.max)}` : '—',
        k.notDetected > 0 ? `${k.notDetected}` : '0',
        `${fmt(k.dualOwnerMsSum)}${k.dualOwnerRounds > 0 ? ` (${k.dualOwnerRounds} rounds)` : ''}`,
        i === 0 ? spikeText : '',
      ]);
    });
  }
  const t = r.targets;
  const spiked = r.rows.find((x) => x.spikes)?.spikes;
  // Files written before the `complete` flag existed were written at the end of a finished run.
  const partial = r.complete === false;
  return [
    ...(partial ? [`PARTIAL RESULTS: the run was in phase "${r.phase}" when this was written (${r.when})${r.error ? `; it stopped on: ${r.error.split('\n')[0]}` : ''}`, ''] : []),
    renderTable(['row', 'failure', 'rounds', 'new owner answering p50 / p99 / max (ms)', 'not detected', 'dual-owner ms (sum)',
      spiked ? `false failovers, ${spiked.minutes} min, ${spiked.spikes} spikes of ${(r.setup.spike as { delayMs?: number } | undefined)?.delayMs ?? '?'} ms` : 'false failovers (spike window not run)'], lines),
    ...r.rows.flatMap((row) => row.kinds.filter((k) => k.errors > 0).map((k) => `${row.label}, ${k.label}: ${k.errors} round(s) could not be completed (see rounds[].error in the JSON)`)),
    '',
    `targets (egressgw defaults): p99 ≤ ${t.p99Ms} ms for every kind: ${t.defaultsP99Met ? 'met' : 'MISSED'}; dual-owner ${fmt(t.defaultsDualOwnerMs)} ms (target 0); ` +
      `false failovers ${t.defaultsFalseFailovers ?? 'not measured'} (target 0)${partial ? ' — so far' : ''}`,
    ...(r.apiWrites ? [`heartbeat writes at the defaults: ${r.apiWrites.leaseWritesPerNodePerSecond}/s per gateway node, ${r.apiWrites.per100NodesPerSecond}/s per 100 (audit log, ${r.apiWrites.overSeconds} s, ${r.apiWrites.nodes} nodes)`] : []),
    `wall time ${Math.round(r.wallSeconds / 60)} min${partial ? ' so far' : ''}; load average ${r.machine.loadAvgStart.join(' ')} → ${r.machine.loadAvgEnd.join(' ')}`,
  ].join('\n');
}

// `node bench/failover.ts table [file.json]`: the README table of a results file, finished or partial
// (default bench/results/failover.json).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [cmd, file] = process.argv.slice(2);
  if (cmd !== 'table') {
    process.stderr.write('usage: node bench/failover.ts table [results.json]   (runs: npm run bench -- --only failover)\n');
    process.exit(2);
  }
  process.stdout.write(table(JSON.parse(readFileSync(file ?? join(HERE, 'results', 'failover.json'), 'utf8')) as FailoverBenchResults) + '\n');
}
