// The lab's measured failover: fail the active node of a VIP gateway and time what follows, on real parts
// (the test environment, src/testenv/env.ts; the shared steps are in src/testenv/failover.ts).
//
// Failing a node = kill -9 of its agent, then its LAN link (eth0) down: what a powered-off node looks like
// from outside (no heartbeat, no frames). The controller notices the heartbeat Lease expiring, elects
// another node, that node's agent puts the VIP on and sends gratuitous ARP, and the router hears it.
//
// What is measured, and how precisely:
//  - "first gratuitous ARP at the router" and "router's ARP entry moved" come from capture / monitor
//    processes in the router namespace, stamped when they read the frame or the notification (≈ 1 ms);
//  - "old node dropped the VIP" comes from an address monitor in the old node's namespace;
//  - "instance Ready", "label moved" and "gateway status" are polled from the API server every ~10 ms,
//    stamped when the answer arrived, so they are late by up to one poll plus a round-trip.
// All stamps are wall-clock milliseconds (performance.timeOrigin + now) across processes of one machine.

import { ACTIVE_FOR_PREFIX, activeForLabel } from '../api/names.ts';
import type { EgressGateway, NodeLike } from '../api/types.ts';
import { GATEWAYS, NODES } from '../kube/resources.ts';
import type { TestEnv, TestEnvNode } from '../testenv/env.ts';
import { heartbeating, lanDown, lanUp, settledActive as settled, warmRouter as warm } from '../testenv/failover.ts';
import type { AddrMonitor, Capture, NeighMonitor } from '../testenv/observe.ts';
import { isInstanceReady, liveInstances } from '../testenv/queries.ts';

export const now = (): number => performance.timeOrigin + performance.now();
const POLL_MS = 10;

export const FAILURE_METHOD = "kill -9 of the node's agent, then its LAN link eth0 down (like a power-off)";

export interface Mark {
  what: string;
  /** ms after the failure was injected; undefined when not seen. */
  ms: number | undefined;
}

export interface FailoverMeasurement {
  gateway: string;
  vip: string;
  from: string;
  /** The new active node, when the failover completed. */
  to: string | undefined;
  completed: boolean;
  marks: Mark[];
  /** Headline number: kill → first gratuitous ARP from the new node at the router (else → instance Ready). */
  totalMs: number | undefined;
  totalWhat: string;
  error?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The gateway's active node once it is settled: one live instance, Ready, the gateway's status agrees,
 * and that node alone holds the VIP.
 */
export async function settledActive(env: TestEnv, gateway: string, vip: string, deadlineMs: number, signal?: AbortSignal): Promise<TestEnvNode> {
  return settled(env, gateway, vip, {
    deadlineMs,
    signal,
    also: async (inst) => (await env.client.get<EgressGateway>(GATEWAYS, gateway)).status?.activeNodeName === inst.node,
  });
}

/** Fails the node: see FAILURE_METHOD. */
export async function failNode(env: TestEnv, node: TestEnvNode): Promise<void> {
  node.agent.kill('SIGKILL');
  await lanDown(env, node);
}

/** Undoes failNode: link up (and its default route back), a fresh agent; waits for its heartbeat. */
export async function recoverNode(env: TestEnv, node: TestEnvNode, deadlineMs: number, signal?: AbortSignal): Promise<void> {
  await lanUp(env, node);
  await env.restartAgent(node);
  await heartbeating(env.client, [node.name], deadlineMs, { signal, what: `${node.name}'s new agent to heartbeat` });
}

/** Makes the router resolve the VIP, so that a later gratuitous ARP has an entry to move. */
async function warmRouter(env: TestEnv, vip: string): Promise<boolean> {
  try {
    await warm(env, vip, 5000);
    return true;
  } catch {
    return false;
  }
}

/**
 * Fails the gateway's active node and measures the failover. Does not recover the failed node (the
 * caller decides: recoverNode). Resolves with `completed: false` and `error` when no other node took
 * over within `deadlineMs`.
 */
export async function measureFailover(env: TestEnv, gateway: string, vip: string, opts: { deadlineMs: number; signal?: AbortSignal }): Promise<FailoverMeasurement> {
  const a = await settledActive(env, gateway, vip, opts.deadlineMs, opts.signal);
  const routerWarm = await warmRouter(env, vip);
  let capture: Capture | undefined;
  let neigh: NeighMonitor | undefined;
  let addr: AddrMonitor | undefined;
  try {
    capture = await env.captureArp(env.router.ns, env.router.bridge);
    neigh = await env.monitorNeighbours(env.router.ns);
    addr = await env.monitorAddresses(a.ns);

    const t0 = now();
    await failNode(env, a);

    let to: TestEnvNode | undefined;
    let readyAt: number | undefined;
    let labelAt: number | undefined;
    let statusAt: number | undefined;
    let garpAt: number | undefined;
    const label = activeForLabel(gateway);
    const end = Date.now() + opts.deadlineMs;
    let error: string | undefined;
    for (;;) {
      opts.signal?.throwIfAborted();
      if (readyAt === undefined) {
        const inst = (await liveInstances(env.client, gateway)).find((i) => i.spec?.nodeName !== a.name && isInstanceReady(i));
        if (inst) {
          readyAt = now();
          to = env.nodes.find((n) => n.name === inst.spec?.nodeName);
        }
      }
      if (labelAt === undefined) {
        const holders = (await env.client.list<NodeLike>(NODES, { labelSelector: label })).items.map((n) => n.metadata.name);
        if (holders.length > 0 && !holders.includes(a.name)) labelAt = now();
      }
      if (statusAt === undefined) {
        const active = (await env.client.get<EgressGateway>(GATEWAYS, gateway)).status?.activeNodeName;
        if (active && active !== a.name) statusAt = now();
      }
      if (to && garpAt === undefined) {
        garpAt = capture.events.find((e) => e.t >= t0 && e.gratuitous && e.senderIp === vip && e.senderMac === to!.mac)?.t;
      }
      const apiDone = readyAt !== undefined && labelAt !== undefined && statusAt !== undefined;
      if (apiDone && garpAt !== undefined) break;
      // The wire part gets a little longer than the API part: the announcement burst follows Ready.
      if (Date.now() > end + (apiDone ? 5000 : 0)) {
        if (!apiDone) error = `no other node took over ${gateway} within ${opts.deadlineMs / 1000}s`;
        break;
      }
      await sleep(POLL_MS);
    }
    const vipGone = addr.events.find((e) => e.deleted && e.ip === vip && e.t >= t0)?.t;
    const entryMoved = to ? neigh.events.find((e) => e.t >= t0 && e.ip === vip && e.mac === to!.mac && !e.deleted)?.t : undefined;
    const rel = (t: number | undefined): number | undefined => (t === undefined ? undefined : Math.round(t - t0));
    const toName = to?.name ?? '?';
    const marks: Mark[] = [
      { what: `${a.name}'s kernel dropped the VIP (address lifetime ran out, nobody refreshed it)`, ms: rel(vipGone) },
      { what: `new instance Ready on ${toName} (API, polled)`, ms: rel(readyAt) },
      { what: `label ${ACTIVE_FOR_PREFIX}${gateway} moved off ${a.name} (API, polled)`, ms: rel(labelAt) },
      { what: `gateway status shows ${toName} (API, polled)`, ms: rel(statusAt) },
      { what: `first gratuitous ARP from ${toName} for ${vip} seen by the router`, ms: rel(garpAt) },
      { what: routerWarm ? `router's ARP entry for ${vip} moved to ${toName}'s MAC` : "router's ARP entry (the router could not resolve the VIP before the failure)", ms: rel(entryMoved) },
    ];
    const totalMs = rel(garpAt) ?? rel(readyAt);
    return {
      gateway,
      vip,
      from: a.name,
      to: to?.name,
      completed: error === undefined,
      marks,
      totalMs,
      totalWhat: garpAt !== undefined ? 'kill → first gratuitous ARP from the new node at the router' : 'kill → new instance Ready (no gratuitous ARP seen at the router)',
      error,
    };
  } finally {
    capture?.stop();
    neigh?.stop();
    addr?.stop();
  }
}

export function formatMeasurement(m: FailoverMeasurement): string {
  const lines = [`failover of ${m.gateway} (VIP ${m.vip}): ${m.from} → ${m.to ?? '(none)'}`, `  t=0: ${FAILURE_METHOD.replace("the node's", `${m.from}'s`)}`];
  const seen = m.marks.filter((x) => x.ms !== undefined).sort((x, y) => x.ms! - y.ms!);
  const width = Math.max(...seen.map((x) => String(x.ms).length), 1);
  for (const x of seen) lines.push(`  +${String(x.ms).padStart(width)} ms  ${x.what}`);
  for (const x of m.marks.filter((y) => y.ms === undefined)) lines.push(`  ${' '.repeat(width + 4)}not seen: ${x.what}`);
  if (m.error) lines.push(`FAILOVER DID NOT COMPLETE: ${m.error}`);
  else lines.push(`failover time: ${m.totalMs} ms (${m.totalWhat})`);
  return lines.join('\n');
}

/** min / median / max over completed rounds, for --rounds N. */
export function summarise(ms: number[]): string {
  if (ms.length === 0) return 'no completed failovers';
  const s = [...ms].sort((a, b) => a - b);
  const med = s.length % 2 === 1 ? s[(s.length - 1) / 2]! : Math.round((s[s.length / 2 - 1]! + s[s.length / 2]!) / 2);
  return `${ms.length} failovers: min ${s[0]} ms, median ${med} ms, max ${s.at(-1)} ms`;
}
