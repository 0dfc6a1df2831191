// `egressgw lab` (`npm start`): the whole system on this machine, never a real cluster. See HELP.
//
// Shape: run() parses flags and owns shutdown; fullLab() (root + `ip netns`) and controlPlaneLab()
// (anything else) start their lab, record it in `State` as soon as it exists, and then either run the
// scenario and return (no terminal, --once) or show the live screen until `q`. Whatever happens —
// scenario done, `q`, Ctrl-C, SIGTERM, an error — the `finally` in run() stops what `State` holds and
// then checks that no namespace, link or child process of this lab is left.

import { assertLabSupported, sweepStale } from '../testenv/netns.ts';
import { cachedBinaries, ensureApiserverBinaries } from '../testenv/apiserver-build.ts';
import { startLab, type LabHandle, type LabNodeHandle } from '../testenv/lab.ts';
import type { EgressGateway, EgressGatewayPolicy } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { GATEWAYS, POLICIES } from '../kube/resources.ts';
import { startControlPlaneLab, type ControlPlaneLab } from '../lab/controlplane.ts';
import { applyExamples, describeExamples, LAB_SET_DIR, labVipGateway, readExamples, SEED_DIR } from '../lab/examples.ts';
import {
  formatMeasurement,
  heartbeatingNodes,
  measureFailover,
  recoverNode,
  settledActive,
  summarise,
  type FailoverMeasurement,
} from '../lab/failover.ts';
import { poll } from '../testenv/poll.ts';
import { childPids, removeLeftovers } from '../lab/leftovers.ts';
import { LiveScreen, readKeys, statusText } from '../lab/screen.ts';
import { UsageError, parseFlags } from './errors.ts';
import { colourWanted } from './table.ts';

const HELP = `Usage: egressgw lab [flags]

The whole system on this machine, to try egressgw out. It never touches a real cluster ($KUBECONFIG and
~/.kube/config are ignored): it always starts its own test API server (etcd + Kubernetes' API server
libraries; the first run builds it, about 5 minutes, with progress on stderr).

It builds a small L2 network in network namespaces (a router and 3 gateway nodes on 198.18.0.0/24,
TEST-NET), runs the controller and one agent per node, applies the seed examples (deploy/examples/*.yaml,
verbatim: their policy names a gateway that does not exist, shown as GatewayNotFound) and the working lab
set (deploy/examples/lab/: gateway lab-egress, VIP 198.18.0.100), and shows the live status.

Keys on a terminal:
  f   fail the active node of lab-egress and print the measured failover. Failing a node = kill -9 of its
      agent, then its LAN link eth0 down (like a power-off: no heartbeat, no frames)
  r   recover failed nodes (link up, a fresh agent)
  q   quit (Ctrl-C too); everything the lab started is removed

Without a terminal (CI, pipes) it behaves as --scenario failover --once: one failover, the status before
and after and the measurement, then it cleans up and exits 0 (1 if no other node took over within 30 s).

The network and the agents need root and \`ip netns\`. Without them it says so and runs the control plane
only: API server, controller and the examples, with 3 lab nodes as API objects and no agents (so VIP
gateways cannot become Ready); f marks the active node NotReady there.

Flags:
  --scenario failover   after start-up, fail the active node and print the measured failover
  --rounds N            failovers in the scenario (default 1); the failed node is recovered between rounds
  --once                no live screen: print the status (and the scenario), clean up and exit
  --no-network          control plane only, even with root
  --keep                keep the logs (controller, agents, API server) and print where they are;
                        namespaces, links and processes are removed all the same
  --no-color            no colours (they are used only on a terminal, and never with NO_COLOR set)
  -h, --help            this help`;

const NODES = 3;
/** startLab names its namespaces after this prefix (src/testenv/lab.ts). */
const LAB_PREFIX = 'egl';
const START_DEADLINE_MS = 60_000;
const FAILOVER_DEADLINE_MS = 30_000;
const STOP_DEADLINE_MS = 60_000;

interface Flags {
  scenario: 'failover' | undefined;
  rounds: number;
  once: boolean;
  network: boolean;
  keep: boolean;
  color: boolean;
}

/** What has been started so far: what the `finally` must stop. */
interface State {
  lab?: LabHandle;
  cp?: ControlPlaneLab;
  labId?: string;
}

interface Ctx {
  flags: Flags;
  signal: AbortSignal;
  state: State;
  /** Progress, for a person: stderr. */
  say(line: string): void;
  /** Results (status screens, measurements): stdout. */
  out(text: string): void;
}

class Interrupted extends Error {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
    this.signal = signal;
  }
}

const SIGNAL_EXIT: Record<string, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

function parse(argv: string[]): Flags | undefined {
  const parsed = parseFlags(
    argv,
    {
      scenario: { type: 'string' },
      rounds: { type: 'string' },
      once: { type: 'boolean' },
      'no-network': { type: 'boolean' },
      keep: { type: 'boolean' },
      'no-color': { type: 'boolean' },
    },
    HELP,
  );
  if (!parsed) return undefined;
  const v = parsed.values;
  if (v.scenario !== undefined && v.scenario !== 'failover') throw new UsageError(`--scenario: "${v.scenario}" is not a scenario (there is one: failover)`);
  const rounds = v.rounds === undefined ? 1 : Number(v.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 100) throw new UsageError(`--rounds: "${v.rounds}" is not a whole number from 1 to 100`);
  // A live screen needs a terminal both ways: keys in, redraws out. Anything else runs the scenario once.
  const terminal = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const scenario = v.scenario === 'failover' || !terminal ? 'failover' : undefined;
  if (v.rounds !== undefined && scenario === undefined) throw new UsageError('--rounds needs --scenario failover');
  return {
    scenario,
    rounds,
    once: v.once === true || !terminal,
    network: v['no-network'] !== true,
    keep: v.keep === true,
    color: colourWanted(process.stdout, v['no-color'] === true),
  };
}

export async function run(argv: string[]): Promise<number> {
  const flags = parse(argv);
  if (!flags) return 0;
  if (flags.keep) process.env.EGRESSGW_KEEP_TESTENV = '1';

  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) return;
    process.stderr.write(`\n${sig}: stopping the lab and removing everything it created…\n`);
    ac.abort(new Interrupted(sig));
  };
  // Never removed: the test harness's own handlers (netns, API server) kill their parts synchronously
  // and re-raise the signal; ours keeps the process alive for the orderly stop below.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);

  const state: State = {};
  const ctx: Ctx = {
    flags,
    signal: ac.signal,
    state,
    say: (line) => process.stderr.write(`${line}\n`),
    out: (text) => process.stdout.write(text),
  };
  const aborted = new Promise<never>((_, reject) => ac.signal.addEventListener('abort', () => reject(ac.signal.reason as Error), { once: true }));
  aborted.catch(() => undefined);

  const body = (async (): Promise<number> => {
    ctx.say('egressgw lab: everything runs on this machine; no real cluster is used or touched.');
    const mode = await networkMode(flags);
    await ensureServerBuilt(ctx);
    return mode.ok ? fullLab(ctx) : controlPlaneLab(ctx, mode.why);
  })();
  body.catch(() => undefined);

  let code = 1;
  try {
    code = await Promise.race([body, aborted]);
    return code;
  } catch (err) {
    if (!(err instanceof Interrupted)) throw err;
    code = SIGNAL_EXIT[err.signal] ?? 1;
    return code;
  } finally {
    await shutdown(ctx, body);
    // Nothing of ours should keep the event loop alive now. A request still in flight to the API server
    // that a signal handler already killed may (its timeout is 30 s): do not wait for it. The exit code
    // is the one runMain sets from our result.
    setTimeout(() => process.exit(), 500).unref();
  }
}

async function networkMode(flags: Flags): Promise<{ ok: true } | { ok: false; why: string }> {
  if (!flags.network) return { ok: false, why: '--no-network: no network namespaces, no agents' };
  if (process.getuid?.() !== 0) {
    return { ok: false, why: 'not root: the network namespaces and the agents need root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN); `sudo npm start` runs the full lab' };
  }
  try {
    await assertLabSupported();
    return { ok: true };
  } catch (err) {
    return { ok: false, why: `cannot build the network namespaces: ${(err as Error).message}` };
  }
}

async function ensureServerBuilt(ctx: Ctx): Promise<void> {
  if (cachedBinaries()) return;
  ctx.say('building test API server (first time: ~5 min; later runs reuse ~/.cache/egressgw)…');
  await ensureApiserverBinaries({ log: (l) => ctx.say(`  ${l}`) });
}

/** Stops what was started (waiting for a start still in flight), then removes any leftovers. */
async function shutdown(ctx: Ctx, body: Promise<number>): Promise<void> {
  const { state } = ctx;
  const hard = setTimeout(() => {
    process.stderr.write(`egressgw lab: stopping took over ${STOP_DEADLINE_MS / 1000}s; exiting (the test harness's exit hooks remove namespaces and servers)\n`);
    process.exit(1);
  }, STOP_DEADLINE_MS);
  hard.unref();
  // A start in flight cannot be cancelled: let it finish (it fails fast if a signal already killed its
  // parts), so that what it started is in `state`. Once started, the body's own waits end on the abort
  // signal, but a request in flight to a server the signal handlers already killed may hang until its
  // timeout: do not wait for that.
  const started = state.lab !== undefined || state.cp !== undefined;
  await Promise.race([body.catch(() => undefined), new Promise((r) => setTimeout(r, started ? 1000 : 30_000).unref())]);
  const kept: string[] = [];
  if (state.lab) {
    if (ctx.flags.keep) kept.push(state.lab.logDir, state.lab.cluster.dir);
    await state.lab.stop().catch((err: Error) => ctx.say(`lab stop: ${err.message}`));
  }
  if (state.cp) {
    if (ctx.flags.keep) kept.push(state.cp.logDir, state.cp.cluster.dir);
    await state.cp.stop().catch((err: Error) => ctx.say(`lab stop: ${err.message}`));
  }
  const removed = state.labId ? await removeLeftovers(state.labId).catch(() => []) : [];
  const children = childPids();
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  clearTimeout(hard);
  const extra = [...removed, ...children.map((p) => `process ${p}`)];
  if (extra.length > 0) ctx.say(`stopped; had to remove leftovers: ${extra.join(', ')}`);
  else if (state.lab || state.cp) ctx.say(`stopped: no processes${state.labId ? `, namespaces or links of ${state.labId}` : ''} left`);
  if (kept.length > 0) ctx.say(`kept (--keep): ${kept.join(' ')}`);
}

/**
 * The test harness picks free ports for etcd by binding and releasing them, so another process can take
 * one in between ("address already in use"). A start that failed that way cleaned up after itself and
 * is simply tried once more.
 */
async function retryPortRace<T>(ctx: Ctx, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    if (ctx.signal.aborted || !/address already in use/.test((err as Error).message)) throw err;
    ctx.say('a port the test API server picked was taken meanwhile; starting again…');
    return start();
  }
}

// ---------- statuses ----------

const hasReady = (o: { status?: { conditions?: Array<{ type: string }> } }): boolean => o.status?.conditions?.some((c) => c.type === 'Ready') ?? false;

/** Every gateway and policy carries a Ready condition for its current generation. */
async function statusesWritten(client: KubeClient): Promise<boolean> {
  const [gws, pols] = await Promise.all([client.list<EgressGateway>(GATEWAYS), client.list<EgressGatewayPolicy>(POLICIES)]);
  const current = (o: EgressGateway | EgressGatewayPolicy): boolean => hasReady(o) && (o.status?.observedGeneration ?? 0) >= (o.metadata.generation ?? 0);
  return gws.items.every(current) && pols.items.every(current);
}

async function applyAll(ctx: Ctx, client: KubeClient): Promise<ReturnType<typeof labVipGateway>> {
  const seed = readExamples(SEED_DIR);
  const labSet = readExamples(LAB_SET_DIR);
  await applyExamples(client, seed);
  await applyExamples(client, labSet);
  ctx.say(`applied the seed examples (${SEED_DIR}) and the lab set (${LAB_SET_DIR}):`);
  for (const l of describeExamples([seed, labSet])) ctx.say(`  ${l}`);
  return labVipGateway(labSet);
}

function section(title: string, body: string): string {
  return `\n── ${title} ──\n${body}`;
}

// ---------- the full lab: network namespaces and agents ----------

async function fullLab(ctx: Ctx): Promise<number> {
  const { flags, signal, state } = ctx;
  const swept = await sweepStale(LAB_PREFIX);
  if (swept.length > 0) ctx.say(`removed leftovers of earlier labs whose process is gone: ${swept.join(', ')}`);
  ctx.say(`starting: network namespaces, test API server, controller, ${NODES} agents…`);
  const lab = await retryPortRace(ctx, () => startLab({ nodes: NODES, keepLogs: flags.keep }));
  state.lab = lab;
  state.labId = lab.netns.id;
  signal.throwIfAborted();
  const id = lab.netns.id;
  ctx.say(`network: router + ${NODES} nodes (namespaces ${id}-router, ${id}-node1…${NODES}; LAN 198.18.0.0/24, router ${lab.router.ip})`);
  ctx.say(`test API server: ${lab.cluster.server} (its files: ${lab.cluster.dir})`);
  ctx.say('controller: running in this process, caches synced (a single replica: the lab runs no leader election)');
  const names = lab.nodes.map((n) => n.name);
  await poll('every agent to heartbeat', async () => (await heartbeatingNodes(lab.client, names)).length === names.length, START_DEADLINE_MS, { signal });
  ctx.say(`agents: ${names.length}/${names.length} heartbeating (pids ${lab.nodes.map((n) => n.agent.pid).join(', ')}; logs in ${lab.logDir})`);

  const gw = await applyAll(ctx, lab.client);
  const active = await settledActive(lab, gw.name, gw.vip, START_DEADLINE_MS, signal);
  await poll('the controller to write every status', () => statusesWritten(lab.client), START_DEADLINE_MS, { signal });
  ctx.say(`${gw.name}: active on ${active.name}, which holds ${gw.vip} on ${active.ifname}`);

  const failed = new Set<LabNodeHandle>();
  /** The last measurement stays on screen while other actions come and go. */
  let lastFailover = '';
  const round = async (): Promise<FailoverMeasurement> => {
    const m = await measureFailover(lab, gw.name, gw.vip, { deadlineMs: FAILOVER_DEADLINE_MS, signal });
    const from = lab.nodes.find((n) => n.name === m.from);
    if (from) failed.add(from);
    return m;
  };
  const recoverAll = async (): Promise<string[]> => {
    const done: string[] = [];
    for (const n of [...failed]) {
      await recoverNode(lab, n, START_DEADLINE_MS, signal);
      failed.delete(n);
      done.push(n.name);
    }
    return done;
  };
  /** The scenario: N rounds, recovering the failed node between rounds. Returns text and success. */
  const scenario = async (onRound: (text: string) => void): Promise<boolean> => {
    const totals: number[] = [];
    for (let i = 1; i <= flags.rounds; i++) {
      const m = await round();
      onRound((flags.rounds > 1 ? `round ${i}/${flags.rounds}: ` : '') + formatMeasurement(m));
      if (!m.completed) return false;
      if (m.totalMs !== undefined) totals.push(m.totalMs);
      if (i < flags.rounds) {
        await recoverAll();
        await settledActive(lab, gw.name, gw.vip, START_DEADLINE_MS, signal);
      }
    }
    if (flags.rounds > 1) onRound(summarise(totals));
    return true;
  };

  if (flags.once) {
    ctx.out(section(flags.scenario ? 'status before failover' : 'status', await statusText(lab.client, flags.color)));
    if (!flags.scenario) return 0;
    ctx.out('\n');
    const ok = await scenario((text) => ctx.out(text + '\n'));
    // The gateway's status already moved (measured); let the policies' statuses catch up too.
    if (ok) await poll('the statuses after the failover', () => statusesWritten(lab.client), FAILOVER_DEADLINE_MS, { signal }).catch(() => undefined);
    ctx.out(section('status after failover', await statusText(lab.client, flags.color)));
    return ok ? 0 : 1;
  }

  return liveScreen(ctx, lab.client, {
    header: () => `egressgw lab · test API server ${lab.cluster.server} (its own, never a real cluster) · network ${id}: router + ${names.join(', ')}` +
      (failed.size > 0 ? ` · failed: ${[...failed].map((n) => n.name).join(', ')}` : ''),
    keys: `f fail the active node of ${gw.name} (kill -9 its agent, LAN link down) · r recover failed nodes · q quit`,
    extra: () => lastFailover,
    initial: flags.scenario ? async (note) => {
      note('running the failover scenario…');
      const texts: string[] = [];
      await scenario((t) => {
        texts.push(t);
        lastFailover = texts.join('\n');
      });
      return '';
    } : undefined,
    actions: {
      f: {
        busy: `failing the active node of ${gw.name} (waiting up to ${FAILOVER_DEADLINE_MS / 1000}s for another node)…`,
        run: async () => {
          lastFailover = formatMeasurement(await round());
          return '';
        },
      },
      r: {
        busy: 'recovering failed nodes…',
        run: async () => {
          const done = await recoverAll();
          return done.length > 0 ? `recovered ${done.join(', ')}: link up, a fresh agent heartbeating` : 'no failed nodes to recover';
        },
      },
    },
  });
}

// ---------- the control plane only ----------

async function controlPlaneLab(ctx: Ctx, why: string): Promise<number> {
  const { flags, signal, state } = ctx;
  ctx.say(`${why}`);
  ctx.say(`running the control plane only: test API server, controller and the examples, with ${NODES} lab nodes as API objects ` +
    '(no network namespaces and no agents, so VIP-mode gateways cannot become Ready and there is no failover to measure)');
  const cp = await retryPortRace(ctx, () => startControlPlaneLab({ nodes: NODES, keepLogs: flags.keep }));
  state.cp = cp;
  signal.throwIfAborted();
  ctx.say(`test API server: ${cp.cluster.server} (its files: ${cp.cluster.dir})`);
  ctx.say('controller: running in this process, caches synced (a single replica: the lab runs no leader election)');
  ctx.say(`nodes: ${cp.nodes.join(', ')} (Node, CiliumNode and a Ready cilium-agent Pod each; no agents)`);
  await applyAll(ctx, cp.client);
  await poll('the controller to write every status', () => statusesWritten(cp.client), START_DEADLINE_MS, { signal });

  if (flags.scenario) ctx.say('no failover scenario: failing a node needs the network and the agents');
  if (flags.once) {
    ctx.out(section('status', await statusText(cp.client, flags.color)));
    return 0;
  }
  const notReady = new Set<string>();
  return liveScreen(ctx, cp.client, {
    header: () => `egressgw lab (control plane only) · test API server ${cp.cluster.server} (its own, never a real cluster)` +
      (notReady.size > 0 ? ` · NotReady: ${[...notReady].join(', ')}` : ''),
    keys: 'f mark the active node NotReady · r mark every node Ready · q quit',
    actions: {
      f: {
        busy: 'marking the active node NotReady…',
        run: async () => {
          const gws = (await cp.client.list<EgressGateway>(GATEWAYS)).items;
          const node = gws.map((g) => g.status?.activeNodeName).find((n) => n && !notReady.has(n));
          if (!node) return 'no gateway has an active node to fail';
          await cp.setNodeReady(node, false);
          notReady.add(node);
          return `marked ${node} NotReady (the control-plane lab has no agents to kill)`;
        },
      },
      r: {
        busy: 'marking every node Ready…',
        run: async () => {
          for (const n of cp.nodes) await cp.setNodeReady(n, true);
          notReady.clear();
          return `marked ${cp.nodes.join(', ')} Ready`;
        },
      },
    },
  });
}

// ---------- the live screen ----------

interface Action {
  busy: string;
  run: () => Promise<string>;
}

/** Redraws the status every second until q / Ctrl-C; keys run actions one at a time. Resolves 0. */
async function liveScreen(
  ctx: Ctx,
  client: KubeClient,
  opts: {
    header: () => string;
    keys: string;
    actions: Record<string, Action>;
    /** Shown under the keys whatever the last action was. */
    extra?: () => string;
    initial?: (note: (s: string) => void) => Promise<string>;
  },
): Promise<number> {
  let note = '';
  let busy = false;
  const screen = new LiveScreen(process.stdout, {
    header: () => `${opts.header()} · ${new Date().toLocaleTimeString()}`,
    body: () => statusText(client, ctx.flags.color),
    footer: () => [`keys: ${opts.keys}`, opts.extra?.() ?? '', note].filter(Boolean).join('\n\n'),
  });
  const perform = (busyText: string, fn: () => Promise<string>): void => {
    if (busy) return;
    busy = true;
    note = busyText;
    void screen.refresh();
    fn()
      .then((text) => (note = text), (err: Error) => (note = ctx.signal.aborted ? note : `failed: ${err.message}`))
      .finally(() => {
        busy = false;
        void screen.refresh();
      });
  };
  let quit!: () => void;
  const quitP = new Promise<void>((r) => (quit = r));
  const restore = readKeys(process.stdin, (key) => {
    if (key === 'q' || key === 'Q' || key === '\x03') quit();
    const a = opts.actions[key.toLowerCase()];
    if (a) perform(a.busy, a.run);
  });
  screen.start(1000);
  if (opts.initial) {
    const initial = opts.initial;
    perform('…', () => initial((s) => ((note = s), void screen.refresh())));
  }
  const onAbort = (): void => quit();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await quitP;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    screen.stop();
    restore();
  }
  process.stdout.write('\n');
  ctx.say('quitting: stopping the lab…');
  return 0;
}
