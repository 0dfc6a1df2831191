// `npm run bench [-- --only controller|failover|dataplane] [--quick] [--skip-failover] [--node-options "<flags>"]
//   [--rounds N] [--rows defaults,tuned,reference,keepalived-1s,keepalived-100ms] [--spike-minutes M]
//   [--reference-groups N] [--keepalived-groups N] [--observe-ms MS] [--spike-seed N]
//   [--reference-grace-ms MS] [--reference-uplink-wait-ms MS]`  (the last two shorten smoke runs only)
//
// Runs the controller bench, the failover bench and the data plane benches (end-to-end test environment;
// needs root and `ip netns`), writes bench/results/{controller,failover,dataplane,dataplane-throughput,
// summary}.json and prints the tables with the targets. A missed target is printed as MISSED but still
// exits 0: benchmarks report, tests assert. A bench that could not run at all (crash) exits 1.
//
// The controller bench runs in a child process (bench/controller-child.ts) started with exactly the Node/V8
// flags the controller Deployment gives the controller: the NODE_OPTIONS env entry of its container in
// deploy/base/controller.yaml, the one place they are set. Its memory target depends on them.
// `--node-options "<flags>"` overrides them for a comparison (`--node-options ""`: V8 defaults).

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import type { FailoverBenchResults } from './failover.ts';
import type { ControllerBenchResults } from './controller.ts';
import type { ControllerChildOptions } from './controller-child.ts';
import { renderTable, type Dist } from './stats.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(HERE, 'results');
/** The controller's Deployment: its container's NODE_OPTIONS are the flags the controller bench runs with. */
const DEPLOYMENT = 'deploy/base/controller.yaml';
const CONTROLLER_CONTAINER = 'controller';

// `--node-options --max-old-space-size=512` would be refused by parseArgs as ambiguous (a value that starts
// with a dash): take the next argument as the value whatever it starts with.
const args = process.argv.slice(2);
for (let i = 0; i < args.length - 1; i++) {
  if (args[i] === '--node-options') args.splice(i, 2, `--node-options=${args[i + 1]}`);
}
const { values } = parseArgs({
  args,
  options: {
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'skip-failover': { type: 'boolean', default: false },
    rounds: { type: 'string' },
    'phase-a-rounds': { type: 'string' },
    rows: { type: 'string' },
    'spike-minutes': { type: 'string' },
    'reference-groups': { type: 'string' },
    'keepalived-groups': { type: 'string' },
    'observe-ms': { type: 'string' },
    'spike-seed': { type: 'string' },
    'reference-grace-ms': { type: 'string' },
    'reference-uplink-wait-ms': { type: 'string' },
    'node-options': { type: 'string' },
  },
  allowPositionals: false,
});
const only = values.only;
if (only !== undefined && only !== 'controller' && only !== 'failover' && only !== 'dataplane') {
  process.stderr.write(`--only must be controller, failover or dataplane, not ${only}\n`);
  process.exit(2);
}
const quick = values.quick ?? false;
const log = (l: string): void => void process.stderr.write(l + '\n');
const out = (l: string): void => void process.stdout.write(l + '\n');

const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '-');
const mark = (ok: boolean): string => (ok ? 'ok' : 'MISSED');

function git(): { commit: string; dirty: string[] } {
  try {
    const root = join(HERE, '..');
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    // Uncommitted changes under src/ at the time of the run: the bench measures the working tree.
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: root, encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.slice(3));
    return { commit, dirty };
  } catch {
    return { commit: 'unknown', dirty: [] };
  }
}

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * Environment the controller container sets that changes how the process uses memory, besides
 * NODE_OPTIONS: the bench process gets the same (and none of these from the caller's environment).
 */
const MEMORY_ENV = ['MALLOC_ARENA_MAX'] as const;

/** The controller container's NODE_OPTIONS and MEMORY_ENV entries, from deploy/base/controller.yaml. */
function deploymentEnv(): { nodeOptions: string; env: Record<string, string> } {
  const file = join(HERE, '..', DEPLOYMENT);
  const fail = (why: string): never => {
    throw new Error(`cannot take the controller's Node/V8 flags from ${DEPLOYMENT}: ${why} (or pass --node-options "<flags>")`);
  };
  const deployments: Obj[] = [];
  for (const d of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (d.errors.length > 0) fail(`invalid YAML: ${d.errors[0]!.message}`);
    const o = d.toJS();
    if (isObj(o) && o.kind === 'Deployment') deployments.push(o);
  }
  const found: string[] = [];
  for (const d of deployments) {
    const spec = isObj(d.spec) && isObj(d.spec.template) && isObj(d.spec.template.spec) ? d.spec.template.spec : {};
    const containers = Array.isArray(spec.containers) ? spec.containers.filter(isObj) : [];
    found.push(...containers.map((c) => `${isObj(d.metadata) ? String(d.metadata.name) : '?'}/${String(c.name)}`));
    const c = containers.find((x) => x.name === CONTROLLER_CONTAINER);
    if (!c) continue;
    const env = Array.isArray(c.env) ? c.env.filter(isObj) : [];
    const e = env.find((x) => x.name === 'NODE_OPTIONS');
    if (!e) return fail(`container "${CONTROLLER_CONTAINER}" has no env entry NODE_OPTIONS`);
    if (typeof e.value !== 'string') return fail('the NODE_OPTIONS env entry has no literal string value');
    const memory: Record<string, string> = {};
    for (const x of env) if ((MEMORY_ENV as readonly unknown[]).includes(x.name) && typeof x.value === 'string') memory[x.name as string] = x.value;
    return { nodeOptions: e.value, env: memory };
  }
  return fail(`no Deployment with a container named "${CONTROLLER_CONTAINER}" (found: ${found.join(', ') || 'no Deployment containers'})`);
}

/** NODE_OPTIONS-style flags as argv. Quoting (which NODE_OPTIONS allows) is not supported: say so. */
function splitFlags(flags: string, source: string): string[] {
  if (/["'\\]/.test(flags)) throw new Error(`node options from ${source} use quotes or backslashes, which the bench does not parse: ${flags}`);
  return flags.split(/\s+/).filter((f) => f !== '');
}

/**
 * Runs the controller bench in a child process under `flags` (plus --expose-gc) and returns its results.
 * The child inherits stderr (live progress) and gets no NODE_OPTIONS: the flags are exactly those given.
 */
async function runControllerBenchInChild(opts: ControllerChildOptions, flags: string[], memoryEnv: Record<string, string>): Promise<ControllerBenchResults> {
  const dir = mkdtempSync(join(os.tmpdir(), 'egressgw-bench-'));
  const outFile = join(dir, 'controller.json');
  try {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    for (const k of MEMORY_ENV) delete env[k];
    Object.assign(env, memoryEnv);
    const argv = [...flags, '--expose-gc', join(HERE, 'controller-child.ts'), JSON.stringify(opts), outFile];
    log(`controller bench: ${process.execPath} ${argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`)).join(' ')}`);
    // The child's stdout (it should write none) goes to our stderr, so that our stdout stays the tables.
    const child = spawn(process.execPath, argv, { env, stdio: ['ignore', process.stderr, 'inherit'] });
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    if (code !== 0) {
      const how = signal !== null ? `was killed by ${signal}` : `exited with status ${code}`;
      const hint = signal === 'SIGABRT' || code === 134 ? ' (V8 aborts like this when the heap limit is reached: see its stderr above)' : ' (see its stderr above)';
      throw new Error(`the controller bench process ${how}${hint}`);
    }
    return JSON.parse(readFileSync(outFile, 'utf8')) as ControllerBenchResults;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function write(name: string, data: unknown): string {
  mkdirSync(RESULTS, { recursive: true });
  const file = join(RESULTS, name);
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}

function controllerTable(r: ControllerBenchResults): string {
  const row = (name: string, d: Dist, target = '', ok?: boolean): string[] => [name, ms(d.p50), ms(d.p99), ms(d.max), target, ok === undefined ? '' : mark(ok)];
  const t = r.targets;
  const s = r.size;
  const lines = [
    `Controller: ${s.nodes} nodes (${s.pools} pools), ${s.gateways} gateways (VIP + PrimaryIP), ${s.policies} policies, ${s.pods} pods in memory` +
      ` (${r.cached.ciliumAgentPods + r.cached.agentPods} watched agent pods cached, ${r.cached.workloadPodsNotWatched} workload pods not watched); ` +
      `${r.machine.cpus} CPUs, ${r.machine.node}, load average ${r.machine.loadAvgStart[0]} → ${r.machine.loadAvgEnd[0]}${r.quick ? ' — QUICK sizes' : ''}`,
    ...(r.nodeOptions !== undefined
      ? [
          `Node/V8 flags: ${r.nodeOptions || 'none (V8 defaults)'} (${r.nodeOptionsSource === DEPLOYMENT ? `the controller's NODE_OPTIONS in ${DEPLOYMENT}` : `from ${r.nodeOptionsSource ?? '?'}`}), plus --expose-gc for the memory readings` +
            `; environment from ${DEPLOYMENT}: ${Object.entries(r.processEnv ?? {}).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}`,
        ]
      : []),
    '',
    renderTable(
      ['pass (event handlers + plan + write plan)', 'p50', 'p99', 'max', 'target', ''],
      [
        row(`event → last write issued (${r.failure.samples} node failures)`, r.failure.total, `p99 ≤ ${t.eventP99Ms} ms`, t.eventP99Met),
        row('  of which event handlers', r.failure.handlers),
        row('  of which planner pass', r.failure.pass),
        row('  of which GC pauses (diagnostic)', r.failure.gcInPass),
        row('  planner pass on-CPU time (diagnostic)', r.failure.passCpu),
        row('  Node NotReady', r.failure.byKind.NodeNotReady),
        row('  heartbeat expired', r.failure.byKind.HeartbeatExpired),
        ...Object.entries(r.failure.byMode).map(([m, d]) => row(`  ${m} gateway`, d)),
        row(`VIP confirmed → label moved (${r.confirm.samples})`, r.confirm.total),
        row(`node recovered (${r.recover.samples})`, r.recover.total),
        row(`resync, unchanged (${r.resync.samples})`, r.resync.total),
        row('  of which GC pauses (diagnostic)', r.resync.gcInPass),
        row('  planner pass on-CPU time (diagnostic)', r.resync.passCpu),
        row('apply writes to caches (bench only)', r.failure.applyToCaches),
      ],
    ),
    '',
    renderTable(
      ['writes and correctness', 'value', 'target', ''],
      [
        ['writes per failure event (median, without events)', String(r.failure.writesMedian), '', ''],
        ['writes per failure event (max)', String(r.failure.writesMax), '', ''],
        ['writes on an unchanged resync', String(r.correctness.unchangedResyncWrites), '0', mark(r.correctness.unchangedResyncWrites === 0)],
        ['writes on the final unchanged resync', String(r.correctness.finalResyncWrites), '0', mark(r.correctness.finalResyncWrites === 0)],
        ['failures whose label moves ≠ affected gateways', String(r.correctness.labelMoveMismatches), '0', mark(r.correctness.labelMoveMismatches === 0)],
        ['label moves on recovery (no failback)', String(r.correctness.recoveryLabelMoves), '0', mark(r.correctness.recoveryLabelMoves === 0)],
        ['initial sync passes / writes', `${r.initialSync.passes} / ${r.initialSync.writes}`, '', ''],
      ],
    ),
    '',
    `write kinds per failure event (mean): ${Object.entries(r.failure.writeKinds).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    ...(r.correctness.unchangedResyncWrites > 0 ? [`write kinds on unchanged resyncs: ${JSON.stringify(r.correctness.unchangedResyncWriteKinds)}`] : []),
    ...r.correctness.mismatchExamples.map((m) => `  mismatch: ${m}`),
    '',
    renderTable(
      ['memory (after a full GC)', 'RSS', 'heap used', 'target', ''],
      [
        ...r.memory.stages.map((m) => [m.stage, `${m.rssMB} MB`, `${m.heapUsedMB} MB`, '', '']),
        ['RSS high-water mark (getrusage)', `${r.memory.maxRssMB} MB`, '', `≤ ${t.rssMB} MB`, mark(t.rssMet)],
      ],
    ),
  ];
  return lines.join('\n');
}

function canRunTestEnv(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (the test environment creates network namespaces)';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch {
    return '`ip netns` is not available';
  }
  return undefined;
}

interface Summary {
  when: string;
  command: string;
  machine: { cpus: number; cpuModel: string; totalMemoryMB: number; node: string; platform: string };
  git: { commit: string; dirty: string[] };
  controller?: {
    skipped?: string;
    error?: string;
    nodeOptions?: string;
    nodeOptionsSource?: string;
    targets?: ControllerBenchResults['targets'];
    eventP50Ms?: number;
    resyncP50Ms?: number;
    resyncP99Ms?: number;
    unchangedResyncWrites?: number;
  };
  failover?: {
    skipped?: string;
    error?: string;
    targets?: FailoverBenchResults['targets'];
    /** The defaults' worst p99 over the failure kinds. */
    defaultsWorstP99Ms?: number;
    wallSeconds?: number;
  };
  /** The Linux data plane (bench/dataplane.ts). */
  dataplane?: {
    skipped?: string;
    error?: string;
    throughputRatio?: number;
    throughputRatioSameHops?: number;
    throughputTarget?: number;
    tcpSurvivedShare?: number;
    /** bench/dataplane-throughput.ts: bare tunnel + one SNAT rule over bare routing, same run (the floor). */
    throughputFloor?: number;
  };
}

const summary: Summary = {
  when: new Date().toISOString(),
  command: ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', totalMemoryMB: Math.round(os.totalmem() / 1024 / 1024), node: process.version, platform: `${os.platform()} ${os.release()}` },
  git: git(),
};
let crashed = false;

if (only === undefined || only === 'controller') {
  try {
    const override = values['node-options'];
    const nodeOptionsSource = override !== undefined ? '--node-options' : DEPLOYMENT;
    const deployed = deploymentEnv();
    const nodeOptions = (override ?? deployed.nodeOptions).trim();
    summary.controller = { nodeOptions, nodeOptionsSource };
    const r = await runControllerBenchInChild({ quick }, splitFlags(nodeOptions, nodeOptionsSource), deployed.env);
    r.nodeOptions = nodeOptions;
    r.nodeOptionsSource = nodeOptionsSource;
    r.processEnv = deployed.env;
    const file = write('controller.json', r);
    out('');
    out(controllerTable(r));
    out(`(written to ${file})`);
    summary.controller = {
      nodeOptions,
      nodeOptionsSource,
      targets: r.targets,
      eventP50Ms: r.failure.total.p50,
      resyncP50Ms: r.resync.total.p50,
      resyncP99Ms: r.resync.total.p99,
      unchangedResyncWrites: r.correctness.unchangedResyncWrites,
    };
  } catch (err) {
    crashed = true;
    summary.controller = { ...summary.controller, error: String((err as Error)?.stack ?? err) };
    out(`controller bench FAILED to run: ${String(err)}`);
  }
} else summary.controller = { skipped: `--only ${only}` };

if (only === undefined || only === 'failover') {
  const why = values['skip-failover'] ? '--skip-failover' : canRunTestEnv();
  if (why) {
    summary.failover = { skipped: why };
    out('');
    out(`failover bench skipped: ${why}`);
  } else {
    try {
      // Loaded only here: it pulls in the network-namespace test environment.
      const { runFailoverBench, ROWS } = await import('./failover.ts');
      const num = (flag: string, v: string | undefined): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isFinite(n) || n < 0) throw new Error(`--${flag} must be a non-negative number, not ${v}`);
        return n;
      };
      const rows = values.rows?.split(',').map((r) => r.trim()).filter((r) => r !== '');
      for (const r of rows ?? []) if (!(ROWS as readonly string[]).includes(r)) throw new Error(`--rows: unknown row ${r} (rows: ${ROWS.join(', ')})`);
      const r = await runFailoverBench({
        rounds: num('rounds', values.rounds) ?? (quick ? 2 : undefined),
        rows: rows as typeof ROWS[number][] | undefined,
        phaseARounds: num('phase-a-rounds', values['phase-a-rounds']),
        spikeMinutes: num('spike-minutes', values['spike-minutes']) ?? (quick ? 0.5 : undefined),
        referenceGroups: num('reference-groups', values['reference-groups']) ?? (quick ? 2 : undefined),
        keepalivedGroups: num('keepalived-groups', values['keepalived-groups']) ?? (quick ? 2 : undefined),
        observeMs: num('observe-ms', values['observe-ms']),
        spikeSeed: num('spike-seed', values['spike-seed']),
        // The reference's grace period is 40 s (the default); shorter only for smoke runs.
        referenceGraceMs: num('reference-grace-ms', values['reference-grace-ms']) ?? (quick ? 10_000 : undefined),
        referenceUplinkWaitMs: num('reference-uplink-wait-ms', values['reference-uplink-wait-ms']) ?? (quick ? 15_000 : undefined),
        log,
      });
      const defaults = r.rows.find((x) => x.row === 'defaults');
      summary.failover = {
        targets: r.targets,
        wallSeconds: r.wallSeconds,
        ...(defaults ? { defaultsWorstP99Ms: Math.max(...defaults.kinds.map((k) => k.failover?.p99 ?? Infinity)) } : {}),
      };
    } catch (err) {
      crashed = true;
      summary.failover = { error: String((err as Error)?.stack ?? err) };
      out(`failover bench FAILED to run: ${String(err)}`);
    }
  }
} else summary.failover = { skipped: `--only ${only}` };

if (only === undefined || only === 'dataplane') {
  const why = values['skip-failover'] ? '--skip-failover' : canRunTestEnv();
  if (why) {
    summary.dataplane = { skipped: why };
    out('');
    out(`dataplane bench skipped: ${why}`);
  } else {
    try {
      const { runDataplaneBench, dataplaneTables } = await import('./dataplane.ts');
      const r = await runDataplaneBench({ rounds: values.rounds !== undefined ? Number(values.rounds) : quick ? 2 : 20, quick, log });
      const file = write('dataplane.json', r);
      out('');
      out(dataplaneTables(r));
      out(`(written to ${file})`);
      const open = r.failover.rounds.reduce((a, x) => a + x.tcpOpen, 0);
      summary.dataplane = {
        throughputRatio: r.failover.throughput.ratio,
        throughputRatioSameHops: r.failover.throughput.ratioSameHops,
        throughputTarget: r.targets.throughputRatio,
        tcpSurvivedShare: open === 0 ? undefined : r.failover.rounds.reduce((a, x) => a + x.tcpSurvived, 0) / open,
      };
    } catch (err) {
      crashed = true;
      summary.dataplane = { error: String((err as Error)?.stack ?? err) };
      out(`dataplane bench FAILED to run: ${String(err)}`);
    }
    try {
      // Where the throughput gap goes: the two-node rigs and the floor (no netfilter, one piece at a time).
      const { runDataplaneThroughputBench, throughputTables } = await import('./dataplane-throughput.ts');
      const t = await runDataplaneThroughputBench(quick ? 1 : 5, log);
      const file = write('dataplane-throughput.json', t);
      out('');
      out(throughputTables(t));
      out(`(written to ${file})`);
      summary.dataplane = { ...summary.dataplane, throughputFloor: t.floor.ratioToDirect.tunnelSnat };
    } catch (err) {
      crashed = true;
      out(`dataplane throughput bench FAILED to run: ${String(err)}`);
    }
  }
} else summary.dataplane = { skipped: `--only ${only}` };

out('');
const rows: string[][] = [];
const c = summary.controller;
if (c?.targets) {
  rows.push(['controller: event → last write issued, p99', ms(c.targets.eventP99ObservedMs), `≤ ${c.targets.eventP99Ms} ms`, mark(c.targets.eventP99Met)]);
  rows.push(['controller: RSS high-water mark', `${c.targets.rssPeakMB} MB`, `≤ ${c.targets.rssMB} MB`, mark(c.targets.rssMet)]);
  rows.push(['controller: writes on an unchanged resync', String(c.unchangedResyncWrites), '0', mark(c.unchangedResyncWrites === 0)]);
} else rows.push(['controller', c?.skipped ? `skipped (${c.skipped})` : 'FAILED', '', '']);
const f = summary.failover;
if (f?.targets) {
  const t = f.targets;
  rows.push(['failover, egressgw defaults: worst p99 over the failure kinds', ms(f.defaultsWorstP99Ms ?? NaN), `≤ ${t.p99Ms} ms`, mark(t.defaultsP99Met)]);
  rows.push(['failover, egressgw defaults: dual-owner time', ms(t.defaultsDualOwnerMs), '0 ms', mark(t.defaultsDualOwnerMs === 0)]);
  rows.push(['failover, egressgw defaults: false failovers in the spike window', t.defaultsFalseFailovers === undefined ? 'not measured' : String(t.defaultsFalseFailovers), '0',
    t.defaultsFalseFailovers === undefined ? 'MISSED' : mark(t.defaultsFalseFailovers === 0)]);
} else rows.push(['failover', f?.skipped ? `skipped (${f.skipped})` : 'FAILED', '', '']);
const d = summary.dataplane;
if (d?.throughputRatio !== undefined) {
  rows.push(['dataplane: throughput tunnel + SNAT / direct', d.throughputRatio.toFixed(2), `≥ ${d.throughputTarget}`, mark(d.throughputRatio >= (d.throughputTarget ?? 0))]);
  if (d.throughputRatioSameHops !== undefined) rows.push(['dataplane: throughput tunnel + SNAT / same hops without them', d.throughputRatioSameHops.toFixed(2), '', '']);
  rows.push(['dataplane: TCP connections surviving a hard failover', d.tcpSurvivedShare === undefined ? '-' : `${(d.tcpSurvivedShare * 100).toFixed(1)} %`, '', '']);
} else rows.push(['dataplane', d?.skipped ? `skipped (${d.skipped})` : 'FAILED', '', '']);
if (d?.throughputFloor !== undefined) rows.push(['dataplane: floor, bare tunnel + one SNAT rule / bare routing (no netfilter)', d.throughputFloor.toFixed(2), '', '']);
out(renderTable(['summary', 'observed', 'target', ''], rows));
const missed = rows.filter((r) => r[3] === 'MISSED').length;
if (missed > 0) out(`\n${missed} target(s) MISSED (reported, not asserted: exit status stays 0).`);
out(`(summary written to ${write('summary.json', summary)})`);
if (crashed) process.exitCode = 1;
