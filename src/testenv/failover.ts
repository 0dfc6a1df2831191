// Failing over a VIP gateway in the test environment: the steps the e2e tests, the failover bench and the
// lab's measured failover share — wait until the gateway has settled on one node, make the router
// resolve the VIP (so a gratuitous ARP has an entry to move), take a node's LAN link down and back.
// What each of them then asserts or measures stays with them.

import type { KubeClient } from '../kube/client.ts';
import type { TestEnv, TestEnvNode } from './env.ts';
import type { NeighbourEntry } from './netns.ts';
import { poll } from './poll.ts';
import { activeInstance, heartbeatingNodes, type ActiveInstance } from './queries.ts';

export interface SettleOptions {
  deadlineMs: number;
  signal?: AbortSignal;
  intervalMs?: number;
  /**
   * What else must hold for the caller to call it settled (the controller's latest decision agrees,
   * every heartbeat is fresh…); checked once the instance and the VIP are settled.
   */
  also?: (instance: ActiveInstance) => boolean | Promise<boolean>;
}

/**
 * The gateway's active node once it is settled: one live instance (no handover in flight), Ready, and
 * its node alone holds the VIP.
 */
export async function settledActive(env: TestEnv, gateway: string, vip: string, opts: SettleOptions): Promise<TestEnvNode> {
  return poll(`gateway ${gateway} to settle (one Ready instance, its node alone holding ${vip})`, async () => {
    const inst = await activeInstance(env.client, gateway);
    if (!inst?.ready || inst.live !== 1) return undefined;
    const holders: TestEnvNode[] = [];
    for (const n of env.nodes) if (await env.hasAddress(n, vip)) holders.push(n);
    if (holders.length !== 1 || holders[0]!.name !== inst.node) return undefined;
    if (opts.also && !(await opts.also(inst))) return undefined;
    return holders[0];
  }, opts.deadlineMs, { signal: opts.signal, intervalMs: opts.intervalMs });
}

/**
 * Makes the router resolve the VIP afresh (an entry left by an earlier round may still be STALE or
 * probing) and returns its resolved neighbour entry.
 */
export async function warmRouter(env: TestEnv, vip: string, deadlineMs: number, signal?: AbortSignal): Promise<NeighbourEntry> {
  await env.net.ip(env.router.ns, ['neigh', 'flush', 'to', vip]);
  await env.udpPoke(env.router.ns, vip);
  return poll('the router to resolve the VIP', async () => {
    const e = await env.net.neighbour(env.router.ns, vip);
    return e?.mac !== undefined && !e.state.includes('INCOMPLETE') ? e : undefined;
  }, deadlineMs, { signal });
}

/** The node's LAN link (eth0) down: no frames in or out, the management link (the API) stays up. */
export async function lanDown(env: TestEnv, node: TestEnvNode): Promise<void> {
  await env.net.setLink(node.ns, node.ifname, 'down');
}

/** Undoes lanDown: link up and its default route back (link down removed the route through it). */
export async function lanUp(env: TestEnv, node: TestEnvNode): Promise<void> {
  await env.net.setLink(node.ns, node.ifname, 'up');
  await env.net.ip(node.ns, ['route', 'replace', 'default', 'via', env.router.ip]);
}

/** Waits until each of `nodes` has an agent heartbeating (a Lease renewed within `freshMs`). */
export async function heartbeating(client: KubeClient, nodes: readonly string[], deadlineMs: number, opts: { signal?: AbortSignal; freshMs?: number; what?: string } = {}): Promise<void> {
  await poll(opts.what ?? `${nodes.join(', ')} to heartbeat`, async () => (await heartbeatingNodes(client, nodes, opts.freshMs)).length === nodes.length, deadlineMs, { signal: opts.signal });
}
