// `egressgw lab` with root and `ip netns`: the whole system in the test environment (src/testenv/env.ts):
// a router and gateway nodes in network namespaces, the test API server, the controller, one agent per
// node. Applies the examples, then runs the failover scenario or shows the live screen (f fails the
// active node over and measures it, r recovers failed nodes).

import { ENV_PREFIX, startTestEnv, type TestEnvNode } from '../testenv/env.ts';
import { heartbeating } from '../testenv/failover.ts';
import { sweepStale } from '../testenv/netns.ts';
import { poll } from '../testenv/poll.ts';
import { applyAll, FAILOVER_DEADLINE_MS, NODES, retryPortRace, section, START_DEADLINE_MS, statusesWritten, type Ctx } from './context.ts';
import { formatMeasurement, measureFailover, recoverNode, settledActive, summarise, type FailoverMeasurement } from './measure.ts';
import { liveScreen, statusText } from './screen.ts';

export async function fullLab(ctx: Ctx): Promise<number> {
  const { flags, signal, state } = ctx;
  const swept = await sweepStale(ENV_PREFIX);
  if (swept.length > 0) ctx.say(`removed leftovers of earlier labs whose process is gone: ${swept.join(', ')}`);
  ctx.say(`starting: network namespaces, test API server, controller, ${NODES} agents…`);
  const env = await retryPortRace(ctx, () => startTestEnv({ nodes: NODES, keepLogs: flags.keep }));
  state.env = env;
  state.netId = env.net.id;
  signal.throwIfAborted();
  const id = env.net.id;
  ctx.say(`network: router + ${NODES} nodes (namespaces ${id}-router, ${id}-node1…${NODES}; LAN 198.18.0.0/24, router ${env.router.ip})`);
  ctx.say(`test API server: ${env.cluster.server} (its files: ${env.cluster.dir})`);
  ctx.say('controller: running in this process, caches synced (a single replica: the lab runs no leader election)');
  const names = env.nodes.map((n) => n.name);
  await heartbeating(env.client, names, START_DEADLINE_MS, { signal, what: 'every agent to heartbeat' });
  ctx.say(`agents: ${names.length}/${names.length} heartbeating (pids ${env.nodes.map((n) => n.agent.pid).join(', ')}; logs in ${env.logDir})`);

  const gw = await applyAll(ctx, env.client);
  const active = await settledActive(env, gw.name, gw.vip, START_DEADLINE_MS, signal);
  await poll('the controller to write every status', () => statusesWritten(env.client), START_DEADLINE_MS, { signal });
  ctx.say(`${gw.name}: active on ${active.name}, which holds ${gw.vip} on ${active.ifname}`);

  const failed = new Set<TestEnvNode>();
  /** The last measurement stays on screen while other actions come and go. */
  let lastFailover = '';
  const round = async (): Promise<FailoverMeasurement> => {
    const m = await measureFailover(env, gw.name, gw.vip, { deadlineMs: FAILOVER_DEADLINE_MS, signal });
    const from = env.nodes.find((n) => n.name === m.from);
    if (from) failed.add(from);
    return m;
  };
  const recoverAll = async (): Promise<string[]> => {
    const done: string[] = [];
    for (const n of [...failed]) {
      await recoverNode(env, n, START_DEADLINE_MS, signal);
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
        await settledActive(env, gw.name, gw.vip, START_DEADLINE_MS, signal);
      }
    }
    if (flags.rounds > 1) onRound(summarise(totals));
    return true;
  };

  if (flags.once) {
    ctx.out(section(flags.scenario ? 'status before failover' : 'status', await statusText(env.client, flags.color)));
    if (!flags.scenario) return 0;
    ctx.out('\n');
    const ok = await scenario((text) => ctx.out(text + '\n'));
    // The gateway's status already moved (measured); let the policies' statuses catch up too.
    if (ok) await poll('the statuses after the failover', () => statusesWritten(env.client), FAILOVER_DEADLINE_MS, { signal }).catch(() => undefined);
    ctx.out(section('status after failover', await statusText(env.client, flags.color)));
    return ok ? 0 : 1;
  }

  return liveScreen(ctx, env.client, {
    header: () => `egressgw lab · test API server ${env.cluster.server} (its own, never a real cluster) · network ${id}: router + ${names.join(', ')}` +
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
