// `egressgw lab` (`npm start`): the whole system on this machine, never a real cluster. See HELP.
//
// Shape: run() parses flags and owns shutdown; fullLab() (full.ts: root + `ip netns`) and
// controlPlaneLab() (controlplane.ts: anything else) start their lab, record it in `State` as soon as it
// exists, and then either run the scenario and return (no terminal, --once) or show the live screen
// until `q`. Whatever happens — scenario done, `q`, Ctrl-C, SIGTERM, an error — the `finally` in run()
// stops what `State` holds and then checks that no namespace, link or child process of this lab is left.

import { cachedBinaries, ensureApiserverBinaries } from '../testenv/apiserver-build.ts';
import { assertNetnsSupported } from '../testenv/netns.ts';
import { UsageError, parseFlags } from '../term/errors.ts';
import { colourWanted } from '../term/table.ts';
import type { Ctx, Flags, State } from './context.ts';
import { controlPlaneLab } from './controlplane.ts';
import { fullLab } from './full.ts';
import { childPids, removeLeftovers } from './leftovers.ts';

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

const STOP_DEADLINE_MS = 60_000;

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
    await assertNetnsSupported();
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
  const started = state.env !== undefined || state.cp !== undefined;
  await Promise.race([body.catch(() => undefined), new Promise((r) => setTimeout(r, started ? 1000 : 30_000).unref())]);
  const kept: string[] = [];
  if (state.env) {
    if (ctx.flags.keep) kept.push(state.env.logDir, state.env.cluster.dir);
    await state.env.stop().catch((err: Error) => ctx.say(`lab stop: ${err.message}`));
  }
  if (state.cp) {
    if (ctx.flags.keep) kept.push(state.cp.logDir, state.cp.cluster.dir);
    await state.cp.stop().catch((err: Error) => ctx.say(`lab stop: ${err.message}`));
  }
  const removed = state.netId ? await removeLeftovers(state.netId).catch(() => []) : [];
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
  else if (state.env || state.cp) ctx.say(`stopped: no processes${state.netId ? `, namespaces or links of ${state.netId}` : ''} left`);
  if (kept.length > 0) ctx.say(`kept (--keep): ${kept.join(' ')}`);
}
