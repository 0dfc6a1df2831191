// What the parts of `egressgw lab` share: the parsed flags, what has been started so far (for the stop in
// main.ts), where output goes, and the steps both modes run (apply the examples, wait for the statuses).

import type { EgressGateway, EgressGatewayPolicy } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { GATEWAYS, POLICIES } from '../kube/resources.ts';
import type { ControlPlane } from '../testenv/controlplane.ts';
import type { TestEnv } from '../testenv/env.ts';
import { applyExamples, describeExamples, LAB_SET_DIR, labVipGateway, readExamples, SEED_DIR } from './examples.ts';

export const NODES = 3;
export const START_DEADLINE_MS = 60_000;
export const FAILOVER_DEADLINE_MS = 30_000;

export interface Flags {
  scenario: 'failover' | undefined;
  rounds: number;
  once: boolean;
  network: boolean;
  keep: boolean;
  color: boolean;
}

/** What has been started so far: what the stop must stop. */
export interface State {
  env?: TestEnv;
  cp?: ControlPlane;
  /** The network's id: every namespace and root link of the lab is named after it. */
  netId?: string;
}

export interface Ctx {
  flags: Flags;
  signal: AbortSignal;
  state: State;
  /** Progress, for a person: stderr. */
  say(line: string): void;
  /** Results (status screens, measurements): stdout. */
  out(text: string): void;
}

/**
 * The test harness picks free ports for etcd by binding and releasing them, so another process can take
 * one in between ("address already in use"). A start that failed that way cleaned up after itself and
 * is simply tried once more.
 */
export async function retryPortRace<T>(ctx: Ctx, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    if (ctx.signal.aborted || !/address already in use/.test((err as Error).message)) throw err;
    ctx.say('a port the test API server picked was taken meanwhile; starting again…');
    return start();
  }
}

const hasReady = (o: { status?: { conditions?: Array<{ type: string }> } }): boolean => o.status?.conditions?.some((c) => c.type === 'Ready') ?? false;

/** Every gateway and policy carries a Ready condition for its current generation. */
export async function statusesWritten(client: KubeClient): Promise<boolean> {
  const [gws, pols] = await Promise.all([client.list<EgressGateway>(GATEWAYS), client.list<EgressGatewayPolicy>(POLICIES)]);
  const current = (o: EgressGateway | EgressGatewayPolicy): boolean => hasReady(o) && (o.status?.observedGeneration ?? 0) >= (o.metadata.generation ?? 0);
  return gws.items.every(current) && pols.items.every(current);
}

/** Applies the seed examples and the lab set; returns the lab set's VIP gateway. */
export async function applyAll(ctx: Ctx, client: KubeClient): Promise<ReturnType<typeof labVipGateway>> {
  const seed = readExamples(SEED_DIR);
  const labSet = readExamples(LAB_SET_DIR);
  await applyExamples(client, seed);
  await applyExamples(client, labSet);
  ctx.say(`applied the seed examples (${SEED_DIR}) and the lab set (${LAB_SET_DIR}):`);
  for (const l of describeExamples([seed, labSet])) ctx.say(`  ${l}`);
  return labVipGateway(labSet);
}

export function section(title: string, body: string): string {
  return `\n── ${title} ──\n${body}`;
}
