// Failover benchmark: hard failures of the active gateway's agent in the end-to-end test environment
// (src/testenv/env.ts: real API server, controller, agents in network namespaces, ARP on a bridge), timed
// from the kill to the first gratuitous ARP of the new owner as seen by the router.
//
// Phases (all on one wall clock; the controller runs in this process, agents and captures are children):
//   detection     kill → the controller pass that creates the new node's instance (it has seen the
//                 heartbeat expire and elected);
//   takeover      → the first ARP frame from the new owner for the VIP at the router (the new agent saw
//                 its instance, added the VIP and announced it): traffic can flow again at this point;
//   confirmation  → the controller sees the new instance Ready (the agent reports *after* announcing,
//                 so this comes last; it moves the active-for label, make-before-break).
// "total" = kill → first GARP at the router.
//
// Reference path (3 trials by default): the reference detects a dead node only by Node NotReady, after
// the node-monitor grace period (40 s). To measure that honestly with the same datapath, the active
// node's agent runs with --no-heartbeat and the bench renews that node's Lease on its behalf — standing
// in for the reference's liveness signal (the agent pod's Ready, which the kubelet of a dead node never
// withdraws) — until the bench, 40 s after the kill, plays the node lifecycle controller: it stops those
// renewals and sets the Node's Ready condition to False. Everything after that is our controller and agents.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_NAMESPACE, heartbeatLeaseName } from '../src/api/names.ts';
import type { PassInfo } from '../src/controller/controller.ts';
import { resourcePath } from '../src/kube/client.ts';
import { leases } from '../src/kube/resources.ts';
import { microTime } from '../src/kube/time.ts';
import { startTestEnv, type TestEnv, type TestEnvNode } from '../src/testenv/env.ts';
import { settledActive } from '../src/testenv/failover.ts';
import type { Capture } from '../src/testenv/observe.ts';
import { poll } from '../src/testenv/poll.ts';
import { heartbeatingNodes } from '../src/testenv/queries.ts';
import { dist } from './stats.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

export interface FailoverBenchOptions {
  /** Hard failovers (kill -9 of the active agent), default 20. */
  rounds?: number;
  /** Reference-path trials (Node NotReady after the grace period), default 3; 0 skips them. */
  referenceTrials?: number;
  /** Simulated node-monitor grace period, default 40 s. */
  referenceGraceMs?: number;
  nodes?: number;
  vip?: string;
  /**
   * Agent heartbeat lease in ms (default 2000, the design default). Detection takes between
   * lease − renewInterval and lease after a kill, so `1500` shows what tuning buys.
   */
  leaseDurationMs?: number;
  /** JSON output (default bench/results/failover.json); '' to skip writing. */
  outFile?: string;
  log?: (line: string) => void;
}

export interface RoundResult {
  round: number;
  from: string;
  to: string;
  detectionMs: number;
  takeoverMs: number;
  confirmationMs: number;
  totalMs: number;
  /** kill → the old node's kernel dropped the VIP (address lifetime; rounded up to whole seconds by the kernel). */
  oldReleasedMs: number;
  /** How long the old node still held the VIP after the new owner's first GARP (0 = no overlap). */
  overlapMs: number;
}

export interface PhaseStats {
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

export interface FailoverBenchResults {
  when: string;
  setup: { nodes: number; vip: string; agent: Record<string, string>; controller: Record<string, string> };
  rounds: RoundResult[];
  summary: { detection: PhaseStats; takeover: PhaseStats; confirmation: PhaseStats; total: PhaseStats; oldReleased: PhaseStats; overlapRounds: number };
  targets: { p50TotalMs: number; p99TotalMs: number; met: boolean };
  reference: { graceMs: number; method: string; trials: RoundResult[]; total?: PhaseStats; ratioP50?: number };
}

const GW = 'bench-gw';

export function stats(values: readonly number[]): PhaseStats {
  const { n: _n, ...phase } = dist(values);
  return phase;
}

interface PassRecord {
  at: number;
  creates: string[];
  active: string;
  confirmed: boolean;
}

export async function runFailoverBench(opts: FailoverBenchOptions = {}): Promise<FailoverBenchResults> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const rounds = opts.rounds ?? 20;
  const refTrials = opts.referenceTrials ?? 3;
  const graceMs = opts.referenceGraceMs ?? 40_000;
  const vip = opts.vip ?? '198.18.0.100';
  const leaseMs = opts.leaseDurationMs ?? 2000;
  const passes: PassRecord[] = [];
  const env = await startTestEnv({
    nodes: opts.nodes ?? 3,
    agentArgs: leaseMs === 2000 ? [] : ['--lease-duration', `${leaseMs}ms`],
    onPass: (p: PassInfo) => {
      const g = p.desired.gateways.get(GW);
      passes.push({
        at: p.at,
        creates: p.writes.flatMap((w) => (w.kind === 'createInstance' ? [w.object.spec?.nodeName ?? ''] : [])),
        active: g?.active ?? '',
        confirmed: g?.confirmed ?? false,
      });
    },
  });
  let capture: Capture | undefined;
  try {
    await env.createVipGateway(GW, vip, ['eth0']);
    capture = await env.captureArp(env.router.ns, 'br0');
    const results: RoundResult[] = [];
    for (let r = 1; r <= rounds; r++) {
      const res = await oneFailover(env, capture, passes, vip, r, async (a) => a.agent.kill('SIGKILL'));
      results.push(res);
      log(`round ${String(r).padStart(2)}: ${res.from} → ${res.to}  detection ${ms(res.detectionMs)}  takeover ${ms(res.takeoverMs)}  total ${ms(res.totalMs)}  (confirmed +${ms(res.confirmationMs)}; old VIP gone after ${ms(res.oldReleasedMs)})`);
    }

    const reference: RoundResult[] = [];
    for (let t = 1; t <= refTrials; t++) {
      const res = await referenceTrial(env, capture, passes, vip, t, graceMs, log);
      reference.push(res);
      log(`reference ${t}: ${res.from} → ${res.to}  total ${ms(res.totalMs)} (detection ${ms(res.detectionMs)})`);
    }

    const summary = {
      detection: stats(results.map((x) => x.detectionMs)),
      takeover: stats(results.map((x) => x.takeoverMs)),
      confirmation: stats(results.map((x) => x.confirmationMs)),
      total: stats(results.map((x) => x.totalMs)),
      oldReleased: stats(results.map((x) => x.oldReleasedMs)),
      overlapRounds: results.filter((x) => x.overlapMs > 0).length,
    };
    const refTotal = reference.length > 0 ? stats(reference.map((x) => x.totalMs)) : undefined;
    const out: FailoverBenchResults = {
      when: new Date().toISOString(),
      setup: {
        nodes: env.nodes.length,
        vip,
        agent: { renewInterval: '500ms', leaseDuration: `${leaseMs}ms`, addressLifetime: '1s', refreshInterval: '250ms', fenceAfter: '1s' },
        controller: { heartbeatDuration: `from the Lease (${leaseMs}ms)`, leaderElection: 'off (single in-process controller)' },
      },
      rounds: results,
      summary,
      targets: { p50TotalMs: 1500, p99TotalMs: 2500, met: summary.total.p50 <= 1500 && summary.total.p99 <= 2500 },
      reference: {
        graceMs,
        method: 'agent --no-heartbeat on the active node; the bench renews its Lease (as the never-withdrawn agent pod Ready of a dead node) until kill+grace, then sets Node Ready=False',
        trials: reference,
        ...(refTotal ? { total: refTotal, ratioP50: refTotal.p50 / summary.total.p50 } : {}),
      },
    };
    const outFile = opts.outFile ?? join(HERE, 'results', 'failover.json');
    if (outFile !== '') {
      mkdirSync(dirname(outFile), { recursive: true });
      writeFileSync(outFile, JSON.stringify(out, null, 2) + '\n');
    }
    log(table(out));
    return out;
  } finally {
    capture?.stop();
    await env.stop();
  }
}

function ms(v: number): string {
  return `${Math.round(v)} ms`;
}

export function table(r: FailoverBenchResults): string {
  const row = (name: string, s: PhaseStats) =>
    `| ${name.padEnd(34)} | ${ms(s.p50).padStart(9)} | ${ms(s.p99).padStart(9)} | ${ms(s.min).padStart(9)} | ${ms(s.max).padStart(9)} |`;
  const lines = [
    `Failover, ${r.rounds.length} hard failovers (kill -9 of the active agent), ${r.setup.nodes} nodes, heartbeat lease ${r.setup.agent.leaseDuration}`,
    '',
    `| ${'phase'.padEnd(34)} | ${'p50'.padStart(9)} | ${'p99'.padStart(9)} | ${'min'.padStart(9)} | ${'max'.padStart(9)} |`,
    `|${'-'.repeat(36)}|${'-'.repeat(11)}|${'-'.repeat(11)}|${'-'.repeat(11)}|${'-'.repeat(11)}|`,
    row('detection (kill → new instance)', r.summary.detection),
    row('takeover (→ first GARP at router)', r.summary.takeover),
    row('total (kill → first GARP)', r.summary.total),
    row('confirmation (GARP → seen Ready)', r.summary.confirmation),
    row('old owner drops VIP (kill → gone)', r.summary.oldReleased),
  ];
  if (r.reference.total) lines.push(row(`reference path (NotReady @ ${r.reference.graceMs / 1000}s)`, r.reference.total));
  lines.push('', `rounds where the old node still held the VIP after the new owner's first GARP: ${r.summary.overlapRounds}/${r.rounds.length}`);
  lines.push(`targets p50 ≤ ${r.targets.p50TotalMs} ms, p99 ≤ ${r.targets.p99TotalMs} ms: ${r.targets.met ? 'met' : 'NOT met'}`);
  if (r.reference.ratioP50) lines.push(`reference / egressgw (p50 total): ${r.reference.ratioP50.toFixed(1)}×`);
  return lines.join('\n');
}

/** Waits until one node alone holds the VIP with a Ready instance, every agent runs and every heartbeat is fresh. */
async function settle(env: TestEnv, vip: string): Promise<TestEnvNode> {
  const names = env.nodes.map((n) => n.name);
  return settledActive(env, GW, vip, {
    deadlineMs: 60_000,
    intervalMs: 50,
    // Every standby has a live heartbeat again (a restarted agent needs a renewal or two).
    also: async () => env.nodes.every((n) => n.agent.alive()) && (await heartbeatingNodes(env.client, names, 1500)).length === names.length,
  });
}

async function oneFailover(env: TestEnv, capture: Capture, passes: PassRecord[], vip: string, round: number,
  fail: (a: TestEnvNode) => Promise<void>, tFailOverride?: () => number): Promise<RoundResult> {
  const a = await settle(env, vip);
  await env.udpPoke(env.router.ns, vip);
  const addrA = await env.monitorAddresses(a.ns);
  const passIdx = passes.length;
  const tKill = Date.now();
  await fail(a);
  const t0 = tFailOverride?.() ?? tKill;
  const created = await poll('the new instance', () => passes.slice(passIdx).find((p) => p.creates.some((n) => n !== a.name)), 120_000, { intervalMs: 5 });
  const to = created.creates.find((n) => n !== a.name)!;
  const b = env.nodes.find((n) => n.name === to)!;
  const garp = await poll('the new owner\'s GARP at the router', () => capture.events.find((e) => e.t >= tKill && e.senderMac === b.mac && e.senderIp === vip), 60_000, { intervalMs: 5 });
  const ready = await poll('the new instance Ready', () => passes.slice(passIdx).find((p) => p.at >= created.at && p.active === to && p.confirmed), 60_000, { intervalMs: 5 });
  const released = await poll('the old owner to drop the VIP', () => addrA.events.find((e) => e.deleted && e.ip === vip), 60_000, { intervalMs: 5 });
  addrA.stop();
  // The next round needs the killed agent back (as a standby: no failback).
  await a.agent.exited;
  await env.restartAgent(a);
  return {
    round,
    from: a.name,
    to,
    detectionMs: created.at - t0,
    takeoverMs: garp.t - created.at,
    confirmationMs: ready.at - garp.t,
    totalMs: garp.t - t0,
    oldReleasedMs: released.t - tKill,
    overlapMs: Math.max(0, released.t - garp.t),
  };
}

/** One reference-path trial: detection only by Node NotReady after the grace period (see the file comment). */
async function referenceTrial(env: TestEnv, capture: Capture, passes: PassRecord[], vip: string, trial: number, graceMs: number,
  log: (l: string) => void): Promise<RoundResult> {
  const a = await settle(env, vip);
  // Stand-in renewals first, so the Lease never lapses while the agent restarts without its heartbeat.
  let renewing = true;
  const leasePath = resourcePath(leases(DEFAULT_NAMESPACE), heartbeatLeaseName(a.name));
  const renew = async () => {
    while (renewing) {
      await env.client.request('PATCH', leasePath, { body: { spec: { renewTime: microTime(Date.now()), holderIdentity: a.name } }, contentType: 'application/merge-patch+json' })
        .catch(() => undefined);
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const renewer = renew();
  try {
    await env.restartAgent(a, ['--no-heartbeat']);
    await poll('the VIP back on the reference-mode agent', () => env.hasAddress(a, vip), 20_000, { intervalMs: 50 });
    log(`reference ${trial}: ${a.name} active with --no-heartbeat; killing it, Node NotReady in ${graceMs / 1000}s`);
    let tKill = 0;
    let grace: NodeJS.Timeout | undefined;
    const res = await oneFailover(env, capture, passes, vip, trial, async (x) => {
      tKill = Date.now();
      x.agent.kill('SIGKILL');
      grace = setTimeout(() => {
        renewing = false;
        void env.setNodeReady(x.name, false);
      }, graceMs);
    }, () => tKill).finally(() => clearTimeout(grace));
    return res;
  } finally {
    renewing = false;
    await renewer;
    await env.setNodeReady(a.name, true);
    // oneFailover restarted the agent in normal mode already.
  }
}

// `node bench/failover.ts [rounds] [referenceTrials]`
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [rounds, refs] = process.argv.slice(2).map(Number);
  await runFailoverBench({ rounds: rounds || undefined, referenceTrials: Number.isFinite(refs) ? refs : undefined });
}
