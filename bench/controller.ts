// Controller benchmark: the controller's per-event work (the planner's informer handlers, then a pass:
// plan again what the events touched, settle, plan the writes) on a large synthetic cluster, in this
// process:
//
//   5,000 nodes (100 pools of 50), 1,000 gateways (half VIP, half PrimaryIP; 10 per pool, so they share
//   nodes), 10,000 policies, 100,000 pods resident in the process. Of those pods the controller caches
//   only what it watches: one cilium-agent pod and one egressgw agent pod per node (10,000); the other
//   90,000 workload pods sit in a separate cache the planner never sees (the controller does not watch
//   them), so they count in RSS but not in pass time. Heartbeats are live (5,000 Leases through the
//   controller's HeartbeatTracker) and every gateway is settled before measuring.
//
// Measured (process.hrtime.bigint, after warm-up):
//   failure   one gateway's active node fails — alternately its Node turns NotReady and its heartbeat
//             expires — then one pass: the planner's handlers for the events since the last pass + its pass
//             (which plans the writes). That is what the shell does between the watch event (or expiry
//             timer) and issuing the first write; the
//             writes themselves are API round-trips, measured by the failover bench, not here. The
//             writes are then applied to the caches (timed separately) and the cluster is settled again.
//   confirm   VIP gateways only: the pass after the new node's agent confirmed its instance (moves the
//             label: make before break).
//   recover   the failed node comes back (no failback: nothing should move).
//   resync    a full pass over the unchanged cluster; it must issue 0 writes.
//   memory    RSS and heap at each stage, after a full GC.
//
// The events go through the controller's real code (src/controller/planner and HeartbeatTracker) from
// client-node's own cache maps, each cache change delivered as the informer delivers it.

import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { ACTIVE_FOR_PREFIX, MODE_VIP } from '../src/api/names.ts';
import { Planner, WATCHED } from '../src/controller/planner/planner.ts';
import type { CoreOptions, Write } from '../src/core/types.ts';
import { addWorkloadPods, advance, agentsAct, applyToCaches, buildCluster, setNodeReady, type Cluster, type ClusterSize } from './synthetic-cluster.ts';
import { dist, mb, median, msSince, type Dist } from './stats.ts';

export interface ControllerBenchOptions {
  /** Small cluster and few samples, for smoke runs and the correctness test. */
  quick?: boolean;
  size?: Partial<ClusterSize>;
  /** Measured failure events (default 200; quick 20). */
  samples?: number;
  /** Unmeasured failure events first (default 20; quick 4). */
  warmup?: number;
  /** Measured unchanged resync passes (default 200; quick 20). */
  resyncSamples?: number;
  log?: (line: string) => void;
}

export type FailureKind = 'NodeNotReady' | 'HeartbeatExpired';

export interface PassTimes {
  total: Dist;
  /** The planner's informer handlers for the events since the last pass. */
  handlers: Dist;
  /** The planner's pass. */
  pass: Dist;
  /** Writes per pass, events excluded (API object writes). */
  writesMedian: number;
  writesMax: number;
  /** Writes per pass including `event` writes. */
  writesWithEventsMedian: number;
  /** Mean count per pass of each write kind. */
  writeKinds: Record<string, number>;
  /** Applying the writes to the caches (the bench's stand-in for the API server; not controller work). */
  applyToCaches: Dist;
  /** Diagnostic: V8 GC pause time that fell inside each measured pass, and the pass time without it. */
  gcInPass: Dist;
  totalExcludingGc: Dist;
  /**
   * Diagnostic: the process's CPU time (user + system, all threads) during the planner's pass. On a
   * shared machine the wall time includes waiting for a core; this does not.
   */
  passCpu: Dist;
}

export interface ControllerBenchResults {
  when: string;
  quick: boolean;
  machine: { cpus: number; cpuModel: string; totalMemoryMB: number; node: string; platform: string; loadAvgStart: number[]; loadAvgEnd: number[] };
  size: ClusterSize;
  /** Objects in each of the controller's caches at the end, and the workload pods it does not watch. */
  cached: {
    nodes: number;
    ciliumNodes: number;
    ciliumAgentPods: number;
    agentPods: number;
    leases: number;
    gateways: number;
    policies: number;
    instances: number;
    cegps: number;
    workloadPodsNotWatched: number;
  };
  notes: string[];
  coreOptions: CoreOptions;
  initialSync: { passes: number; writes: number; passMs: number[] };
  failure: PassTimes & { samples: number; byKind: Record<FailureKind, Dist>; byMode: Record<string, Dist>; settlePassesMax: number };
  confirm: PassTimes & { samples: number };
  recover: PassTimes & { samples: number };
  resync: { samples: number; total: Dist; handlers: Dist; pass: Dist; passCpu: Dist; writesMax: number; writeKinds: Record<string, number>; gcInPass: Dist };
  memory: {
    gcExposed: boolean;
    stages: Array<{ stage: string; rssMB: number; heapUsedMB: number; heapTotalMB: number; externalMB: number }>;
    /** The process's RSS high-water mark (getrusage maxrss). */
    maxRssMB: number;
  };
  correctness: {
    unchangedResyncWrites: number;
    unchangedResyncWriteKinds: Record<string, number>;
    /** An unchanged resync after all the failure/recovery cycles. */
    finalResyncWrites: number;
    failureEvents: number;
    /** Events whose label moves (settled before → settled after) were not exactly the affected gateways. */
    labelMoveMismatches: number;
    mismatchExamples: string[];
    affectedGatewaysTotal: number;
    /** Active-node changes caused by a failed node's recovery (no failback: must be 0). */
    recoveryLabelMoves: number;
  };
  targets: { eventP99Ms: number; rssMB: number; eventP99ObservedMs: number; rssPeakMB: number; eventP99Met: boolean; rssMet: boolean };
  /** Node/V8 flags the bench process ran with (set by bench/run.ts, which runs the bench in a child process). */
  nodeOptions?: string;
  /** Where nodeOptions came from: the controller Deployment (deploy/base/controller.yaml) or --node-options. */
  nodeOptionsSource?: string;
  /** Memory-related environment of the process (e.g. MALLOC_ARENA_MAX), from the controller Deployment. */
  processEnv?: Record<string, string>;
}

const FULL: ClusterSize = { nodes: 5000, pools: 100, gateways: 1000, policies: 10_000, pods: 100_000 };
const QUICK: ClusterSize = { nodes: 200, pools: 10, gateways: 40, policies: 400, pods: 4000 };
export const TARGET_EVENT_P99_MS = 50;
export const TARGET_RSS_MB = 300;

/** What the controller passes to the core (src/controller/controller.ts; --handover-timeout default 5s). */
const CORE_OPTIONS: CoreOptions = { handoverTimeoutMs: 5000, requireCiliumAgent: true };

/** `global.gc`, or the same function obtained at run time when node was not started with --expose-gc. */
function getGc(): { gc: () => void; exposed: boolean } {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return { gc: g, exposed: true };
  try {
    v8.setFlagsFromString('--expose-gc');
    return { gc: vm.runInNewContext('gc') as () => void, exposed: true };
  } catch {
    return { gc: () => undefined, exposed: false };
  }
}

interface PassSample {
  handlerMs: number;
  passMs: number;
  passCpuMs: number;
  totalMs: number;
  writes: Write[];
  /** performance.now() window of the pass, to attribute GC pauses to it afterwards. */
  from: number;
  to: number;
}

/** The controller's planner (one per bench run, as one per controller process), fed by the caches' events. */
let planner = new Planner(CORE_OPTIONS);
/** Time spent in the planner's handlers since the last pass. */
let handlerNs = 0n;

/** Feed the planner what the caches hold (an informer's initial list), then every change, as the controller's informers do. */
function wire(c: Cluster): void {
  planner = new Planner(CORE_OPTIONS);
  handlerNs = 0n;
  for (const list of WATCHED) {
    const cache = c.caches[list];
    for (const o of cache.list()) planner.handle(list, 'add', o as never);
    cache.onEvent((type, o) => {
      const t = process.hrtime.bigint();
      planner.handle(list, type, o as never);
      handlerNs += process.hrtime.bigint() - t;
    });
  }
}

function pass(c: Cluster): PassSample {
  const from = performance.now();
  const handlerMs = Number(handlerNs) / 1e6;
  handlerNs = 0n;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const { writes } = planner.pass(c.now, c.heartbeats.heartbeats());
  const passMs = msSince(t0);
  const cpu = process.cpuUsage(cpu0);
  return { handlerMs, passMs, passCpuMs: (cpu.user + cpu.system) / 1000, totalMs: handlerMs + passMs, writes, from, to: performance.now() };
}

/** GC pauses as V8 reports them; entries arrive asynchronously, so the bench yields between samples. */
class GcLog {
  private readonly entries: Array<{ from: number; to: number }> = [];
  private readonly obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) this.entries.push({ from: e.startTime, to: e.startTime + e.duration });
  });

  constructor() {
    this.obs.observe({ entryTypes: ['gc'] });
  }

  /** GC milliseconds overlapping [from, to]. */
  within(from: number, to: number): number {
    let ms = 0;
    for (const e of this.entries) ms += Math.max(0, Math.min(to, e.to) - Math.max(from, e.from));
    return ms;
  }

  stop(): void {
    this.obs.disconnect();
  }
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function kinds(writes: readonly Write[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const w of writes) out[w.kind] = (out[w.kind] ?? 0) + 1;
  return out;
}

/** Gateway → node carrying its active-for label (from the Node cache, as the core reads it). */
function activeByGateway(c: Cluster): Map<string, string> {
  const m = new Map<string, string>();
  for (const n of c.caches.nodes.list()) {
    for (const k in n.metadata.labels ?? {}) if (k.startsWith(ACTIVE_FOR_PREFIX)) m.set(k.slice(ACTIVE_FOR_PREFIX.length), n.metadata.name);
  }
  return m;
}

function diffActive(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): string[] {
  const names = new Set([...a.keys(), ...b.keys()]);
  return [...names].filter((g) => a.get(g) !== b.get(g)).sort();
}

/** Passes (with agents acting in between) until a pass writes nothing. Returns the passes run. */
function settle(c: Cluster, max = 10): number {
  for (let i = 1; i <= max; i++) {
    const { writes } = pass(c);
    applyToCaches(c, writes);
    const acted = agentsAct(c);
    if (writes.length === 0 && acted === 0) return i;
  }
  throw new Error(`cluster did not settle in ${max} passes`);
}

class Recorder {
  readonly samples: PassSample[] = [];
  readonly applyMs: number[] = [];

  add(s: PassSample, applyMs: number): void {
    this.samples.push(s);
    this.applyMs.push(applyMs);
  }

  times(gcLog: GcLog): PassTimes {
    const s = this.samples;
    const gcMs = s.map((x) => gcLog.within(x.from, x.to));
    const api = s.map((x) => x.writes.filter((w) => w.kind !== 'event').length);
    const all: Record<string, number> = {};
    for (const x of s) for (const [k, v] of Object.entries(kinds(x.writes))) all[k] = (all[k] ?? 0) + v;
    for (const k of Object.keys(all)) all[k] = Math.round(((all[k] as number) / (s.length || 1)) * 100) / 100;
    return {
      total: dist(s.map((x) => x.totalMs)),
      handlers: dist(s.map((x) => x.handlerMs)),
      pass: dist(s.map((x) => x.passMs)),
      writesMedian: median(api),
      writesMax: Math.max(0, ...api),
      writesWithEventsMedian: median(s.map((x) => x.writes.length)),
      writeKinds: all,
      applyToCaches: dist(this.applyMs),
      gcInPass: dist(gcMs),
      totalExcludingGc: dist(s.map((x, i) => x.totalMs - (gcMs[i] ?? 0))),
      passCpu: dist(s.map((x) => x.passCpuMs)),
    };
  }
}

/** One pass, then its writes applied to the caches (timed apart) and the agents' reaction. */
function measuredPass(c: Cluster, rec: Recorder | undefined): PassSample {
  const s = pass(c);
  const t = process.hrtime.bigint();
  applyToCaches(c, s.writes);
  const applyMs = msSince(t);
  agentsAct(c);
  rec?.add(s, applyMs);
  return s;
}

export async function runControllerBench(opts: ControllerBenchOptions = {}): Promise<ControllerBenchResults> {
  const quick = opts.quick ?? false;
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const size: ClusterSize = { ...(quick ? QUICK : FULL), ...opts.size };
  const samples = opts.samples ?? (quick ? 20 : 200);
  const warmup = opts.warmup ?? (quick ? 4 : 20);
  const resyncSamples = opts.resyncSamples ?? (quick ? 20 : 200);
  const loadAvgStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const { gc, exposed } = getGc();
  const gcLog = new GcLog();
  const stages: ControllerBenchResults['memory']['stages'] = [];
  const mem = (stage: string): void => {
    gc();
    const m = process.memoryUsage();
    stages.push({ stage, rssMB: mb(m.rss), heapUsedMB: mb(m.heapUsed), heapTotalMB: mb(m.heapTotal), externalMB: mb(m.external) });
    log(`  memory ${stage}: rss ${mb(m.rss)} MB, heap used ${mb(m.heapUsed)} MB`);
  };

  mem('baseline (modules loaded, no cluster)');
  log(`controller bench: ${size.nodes} nodes, ${size.gateways} gateways, ${size.policies} policies, ${size.pods} pods${quick ? ' (quick)' : ''}`);
  const c = buildCluster(size, Date.parse('2026-01-01T00:00:00.000Z'));
  wire(c);
  mem('controller caches built (unsettled)');
  const workload = addWorkloadPods(c, size.pods);
  mem(`+ ${workload.size} unwatched workload pods`);

  // Initial sync: from nothing to every gateway settled (labels, instances Ready, CEGPs, statuses).
  const initialMs: number[] = [];
  let initialWrites = 0;
  let initialPasses = 0;
  for (;;) {
    const s = pass(c);
    initialPasses++;
    initialMs.push(Math.round(s.totalMs * 10) / 10);
    initialWrites += s.writes.length;
    applyToCaches(c, s.writes);
    const acted = agentsAct(c);
    if (s.writes.length === 0 && acted === 0) break;
    if (initialPasses > 10) throw new Error('initial sync did not settle');
  }
  const settledActive = activeByGateway(c);
  if (settledActive.size !== size.gateways) throw new Error(`only ${settledActive.size}/${size.gateways} gateways have an active node after the initial sync`);
  log(`  initial sync: ${initialPasses} passes, ${initialWrites} writes (pass ms: ${initialMs.join(', ')})`);
  mem('settled');

  // Unchanged resyncs. The clock moves 500 ms per pass and every agent renews (what the tracker sees).
  const resync: PassSample[] = [];
  const resyncKinds: Record<string, number> = {};
  for (let i = 0; i < warmup + resyncSamples; i++) {
    advance(c, 500);
    const s = pass(c);
    for (const [k, v] of Object.entries(kinds(s.writes))) resyncKinds[k] = (resyncKinds[k] ?? 0) + v;
    if (i >= warmup) resync.push(s);
    await flush();
    // Honest: if a resync did write, apply it so later passes do not repeat the same writes.
    applyToCaches(c, s.writes);
  }
  const resyncWrites = Object.values(resyncKinds).reduce((a, b) => a + b, 0);
  log(`  unchanged resync: p50 ${dist(resync.map((x) => x.totalMs)).p50.toFixed(1)} ms, writes over ${warmup + resyncSamples} passes: ${resyncWrites}`);

  // Failure events.
  const failure = new Recorder();
  const confirm = new Recorder();
  const recover = new Recorder();
  const byKind: Record<FailureKind, number[]> = { NodeNotReady: [], HeartbeatExpired: [] };
  const byMode: Record<string, number[]> = {};
  const mismatches: string[] = [];
  let affectedTotal = 0;
  let recoveryMoves = 0;
  let settleMax = 0;
  const G = c.gatewayNames.length;
  const stride = [389, 397, 401, 409].find((p) => G % p !== 0 && gcd(p, G) === 1) ?? 1;
  for (let i = 0; i < warmup + samples; i++) {
    const measuring = i >= warmup;
    const gw = c.gatewayNames[(i * stride) % G] as string;
    const before = activeByGateway(c);
    const x = before.get(gw);
    if (!x) throw new Error(`gateway ${gw} has no active node before event ${i}`);
    const affected = [...before].filter(([, n]) => n === x).map(([g]) => g).sort();
    const kind: FailureKind = Math.floor(i / 2) % 2 === 0 ? 'NodeNotReady' : 'HeartbeatExpired';
    if (kind === 'NodeNotReady') {
      advance(c, 100);
      setNodeReady(c, x, false);
    } else {
      c.silent.add(x);
      // The controller's expiry timer fires just after the Lease duration (2 s) without a renewal.
      advance(c, 2001);
    }
    const s = measuredPass(c, measuring ? failure : undefined);
    const mode = (c.caches.gateways.get(gw)?.spec?.sourceIP?.mode ?? '') === MODE_VIP ? 'VIP' : 'PrimaryIP';
    if (measuring) {
      byKind[kind].push(s.totalMs);
      (byMode[mode] ??= []).push(s.totalMs);
    }
    // VIP: the new node's agent has confirmed (agentsAct); the next pass moves the label.
    const vipAffected = affected.some((g) => c.caches.gateways.get(g)?.spec?.sourceIP?.mode === MODE_VIP);
    if (vipAffected) measuredPass(c, measuring ? confirm : undefined);
    settleMax = Math.max(settleMax, settle(c));
    const after = activeByGateway(c);
    const moved = diffActive(before, after);
    const bad = moved.join(',') !== affected.join(',') || affected.some((g) => !after.get(g) || after.get(g) === x);
    if (measuring) {
      affectedTotal += affected.length;
      if (bad) {
        mismatches.push(`event ${i} (${kind} of ${x}): affected [${affected.join(',')}], moved [${moved.join(',')}], now on [${affected.map((g) => after.get(g) ?? '-').join(',')}]`);
      }
    }

    // The node comes back.
    if (kind === 'NodeNotReady') {
      advance(c, 100);
      setNodeReady(c, x, true);
    } else {
      c.silent.delete(x);
      advance(c, 100);
    }
    measuredPass(c, measuring ? recover : undefined);
    settle(c);
    const back = diffActive(after, activeByGateway(c));
    if (measuring) recoveryMoves += back.length;
    await flush();
    if (measuring && (i - warmup + 1) % 50 === 0) log(`  failure events: ${i - warmup + 1}/${samples}`);
  }

  advance(c, 500);
  const final = pass(c);
  mem('after all runs');

  await flush();
  gcLog.stop();
  const f = failure.times(gcLog);
  // The target is judged on the highest RSS the process reached (any reading, or the kernel's high-water mark).
  const rssPeak = Math.max(mb(process.resourceUsage().maxRSS * 1024), ...stages.map((s) => s.rssMB));
  const results: ControllerBenchResults = {
    when: new Date().toISOString(),
    quick,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', totalMemoryMB: Math.round(os.totalmem() / 1024 / 1024), node: process.version, platform: `${os.platform()} ${os.release()}`, loadAvgStart, loadAvgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    size,
    cached: {
      nodes: c.caches.nodes.size,
      ciliumNodes: c.caches.ciliumNodes.size,
      ciliumAgentPods: c.caches.ciliumAgentPods.size,
      agentPods: c.caches.agentPods.size,
      leases: c.caches.leases.size,
      gateways: c.caches.gateways.size,
      policies: c.caches.policies.size,
      instances: c.caches.instances.size,
      cegps: c.caches.cegps.size,
      // Read here, after the runs, so they stay resident for every memory reading above.
      workloadPodsNotWatched: workload.size,
    },
    notes: [
      'The controller watches only cilium-agent pods and egressgw agent pods (one of each per node); the remaining pods are workload pods it never caches. They are held in this process (RSS includes them) but the planner never sees them.',
      'Times are one pass: the planner\'s handlers for the events since the last pass + planner.pass (src/controller/planner: plans again what the events touched, settles the elections, plans the writes). API round-trips for the writes are not included (see the failover bench).',
      'Objects are built API-shaped (no managedFields, no node images list) and every cached object, including the unwatched workload pods, then goes through the controller\'s informer transform (src/controller/trim.ts), as in the controller.',
      'The planner is one long-lived instance fed by the caches\' events, as in the controller.',
      `Node/V8 flags of this process: ${process.execArgv.join(' ') || 'none (V8 defaults)'}.`,
      'The RSS target is judged on the peak (getrusage maxRSS, the conservative reading); the steady state after a full GC is the last memory stage.',
      exposed ? 'Memory is read after a full GC.' : 'gc was not available: memory is read without a forced GC.',
    ],
    coreOptions: CORE_OPTIONS,
    initialSync: { passes: initialPasses, writes: initialWrites, passMs: initialMs },
    failure: {
      ...f,
      samples: failure.samples.length,
      byKind: { NodeNotReady: dist(byKind.NodeNotReady), HeartbeatExpired: dist(byKind.HeartbeatExpired) },
      byMode: Object.fromEntries(Object.entries(byMode).map(([k, v]) => [k, dist(v)])),
      settlePassesMax: settleMax,
    },
    confirm: { ...confirm.times(gcLog), samples: confirm.samples.length },
    recover: { ...recover.times(gcLog), samples: recover.samples.length },
    resync: {
      samples: resync.length,
      total: dist(resync.map((x) => x.totalMs)),
      handlers: dist(resync.map((x) => x.handlerMs)),
      pass: dist(resync.map((x) => x.passMs)),
      passCpu: dist(resync.map((x) => x.passCpuMs)),
      writesMax: Math.max(0, ...resync.map((x) => x.writes.length)),
      writeKinds: resyncKinds,
      gcInPass: dist(resync.map((x) => gcLog.within(x.from, x.to))),
    },
    memory: { gcExposed: exposed, stages, maxRssMB: mb(process.resourceUsage().maxRSS * 1024) },
    correctness: {
      unchangedResyncWrites: resyncWrites,
      unchangedResyncWriteKinds: resyncKinds,
      finalResyncWrites: final.writes.length,
      failureEvents: failure.samples.length,
      labelMoveMismatches: mismatches.length,
      mismatchExamples: mismatches.slice(0, 5),
      affectedGatewaysTotal: affectedTotal,
      recoveryLabelMoves: recoveryMoves,
    },
    targets: {
      eventP99Ms: TARGET_EVENT_P99_MS,
      rssMB: TARGET_RSS_MB,
      eventP99ObservedMs: f.total.p99,
      rssPeakMB: rssPeak,
      eventP99Met: f.total.p99 <= TARGET_EVENT_P99_MS,
      rssMet: rssPeak <= TARGET_RSS_MB,
    },
  };
  return results;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
