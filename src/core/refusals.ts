// VIP mode: a gateway whose VIP no node accepts (every agent refuses it: a router's address, no such
// interface…, or none confirms in time). Without memory the election tries the nodes in turn forever,
// one handover timeout each: a timed-out node is remembered only by its own instance, and that instance
// must go when the next node is tried (an instance orders its agent to hold the VIP; see settleVIP).
//
// The memory travels instead on the next target's instance (REFUSED_ANNOTATION): the nodes refused so
// far in this sequence and why, and how many times the sequence was retried. With every candidate
// refused there is no target: the last instance stays, nothing moves, and the gateway says VIPRefused,
// naming each node's reason. A backoff after the last refusal (30 s, doubling per retry, at most 10 min)
// every node is tried again (a new sequence; the instance kept from the last one is assigned anew,
// which restarts its handover clock and makes its agent look again), so the gateway recovers by
// itself once the cause is removed. Pure: everything is read from the instances (no clock of our own is stored).

import type { EgressGatewayInstance } from '../api/types.ts';
import { REFUSED_ANNOTATION } from '../api/names.ts';
import type { GatewayInfo } from './validate.ts';
import { isConfirmed, specMatches, type InstanceFacts } from './instances.ts';
import { annotationsOf, byString, isObject } from './util.ts';

/** First retry of a fully refused sequence, doubling per retry up to the maximum. */
export const REFUSAL_RETRY_BASE_MS = 30_000;
export const REFUSAL_RETRY_MAX_MS = 10 * 60_000;

export interface Refusals {
  /** Node → why it did not take the VIP (its agent's message, or that it did not confirm in time). */
  nodes: ReadonlyMap<string, string>;
  retries: number;
  /** When the remembered nodes are tried again (ms since the epoch). */
  retryAt: number;
}

/** The memory of one pass; `expiredAt`: the retry time that came in this pass (every node is tried again). */
export type RefusalState = Refusals & { expiredAt?: number };

/** What an instance carries: the retry time follows from the carrier's own assigned-at (see retryTime). */
export interface CarriedRefusals {
  nodes: ReadonlyMap<string, string>;
  retries: number;
}

export function refusalBackoffMs(retries: number): number {
  return Math.min(REFUSAL_RETRY_BASE_MS * 2 ** Math.min(retries, 30), REFUSAL_RETRY_MAX_MS);
}

/** The memory an instance carries, or undefined (absent or malformed: a hand-edited value is ignored). */
export function parseRefusals(inst: EgressGatewayInstance): CarriedRefusals | undefined {
  const raw = annotationsOf(inst)[REFUSED_ANNOTATION];
  if (typeof raw !== 'string' || raw === '') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!isObject(v) || !isObject(v['nodes']) || typeof v['retries'] !== 'number' || !Number.isInteger(v['retries']) || v['retries'] < 0) return undefined;
  const nodes = new Map<string, string>();
  for (const [n, m] of Object.entries(v['nodes'])) if (typeof m === 'string') nodes.set(n, m);
  return { nodes, retries: v['retries'] };
}

export function formatRefusals(r: CarriedRefusals): string {
  const nodes: Record<string, string> = {};
  for (const n of [...r.nodes.keys()].sort(byString)) nodes[n] = r.nodes.get(n) as string;
  return JSON.stringify({ nodes, retries: r.retries });
}

/**
 * The retry time of a sequence whose newest instance was assigned at `assignedAt`: its handover timeout,
 * then the backoff. With every node refused, that instance is the last one tried, so the remembered
 * nodes are tried again a backoff after the last refusal.
 */
function retryTime(assignedAt: number, handoverTimeoutMs: number, retries: number): number {
  return assignedAt + handoverTimeoutMs + refusalBackoffMs(retries);
}

/** What the node's agent said about its instance (Ready=False message), else the timeout. */
function refusalMessage(f: InstanceFacts): string {
  const conds: unknown = (f.instance.status as { conditions?: unknown } | undefined)?.conditions;
  if (Array.isArray(conds)) {
    for (const c of conds) {
      if (isObject(c) && c['type'] === 'Ready' && c['status'] === 'False' && typeof c['message'] === 'string' && c['message'] !== '') return c['message'];
    }
  }
  return 'did not confirm the VIP within the handover timeout';
}

/**
 * The gateway's refusal memory this pass: the newest sequence (most retries, then newest carrier)
 * carried by its unconfirmed instances with the current spec, plus the nodes timed out now
 * (`timedOut`, with their instances' messages). When the sequence's retry time has come, a new one
 * starts (`retries` + 1; `expiredAt` set) remembering no node, not even those timed out now; it is
 * carried by the target's instance, assigned now in this pass. Long past its retry time (the controller was away,
 * or an old target's annotation shows up again on an instance that later lost its Ready), the count
 * starts over.
 */
export function refusalsOf(
  g: GatewayInfo,
  primary: ReadonlyMap<string, InstanceFacts>,
  timedOut: ReadonlySet<string>,
  now: number,
  handoverTimeoutMs: number,
): RefusalState | undefined {
  let carried: Refusals | undefined;
  const chains: Refusals[] = [];
  for (const f of primary.values()) {
    // The old owner of a handover under way is no target: whatever it carries from its own turn is past.
    // A held target (marked for its own node, see heldInstance in gateway.ts) carries the current memory.
    if (f.deleting || (f.handoverTo !== '' && f.handoverTo !== f.node) || !Number.isFinite(f.assignedAt) || !specMatches(f.instance, f.node, g) || isConfirmed(f, g)) continue;
    const c = parseRefusals(f.instance);
    if (c === undefined) continue;
    const r: Refusals = { ...c, retryAt: retryTime(f.assignedAt, handoverTimeoutMs, c.retries) };
    chains.push(r);
    if (carried === undefined || r.retries > carried.retries || (r.retries === carried.retries && r.retryAt > carried.retryAt)) carried = r;
  }
  const own = new Map<string, string>();
  let lastAssigned = Number.NEGATIVE_INFINITY;
  for (const n of [...timedOut].sort(byString)) {
    const f = primary.get(n);
    if (f === undefined) continue;
    own.set(n, refusalMessage(f));
    lastAssigned = Math.max(lastAssigned, f.assignedAt);
  }
  if (carried === undefined) {
    if (own.size === 0) return undefined;
    carried = { nodes: new Map(), retries: 0, retryAt: retryTime(lastAssigned, handoverTimeoutMs, 0) };
  }
  if (now >= carried.retryAt) {
    // Every node is free again, also those timed out now: the target's instance is assigned anew.
    const retries = now >= carried.retryAt + refusalBackoffMs(carried.retries) ? 0 : carried.retries + 1;
    return { nodes: new Map(), retries, retryAt: retryTime(now, handoverTimeoutMs, retries), expiredAt: carried.retryAt };
  }
  // Every instance of the newest sequence adds its nodes (the same sequence seen from two instances
  // while a handover within it is under way).
  const nodes = new Map<string, string>();
  for (const r of chains) if (r.retries === carried.retries) for (const [n, m] of r.nodes) nodes.set(n, m);
  for (const [n, m] of own) nodes.set(n, m);
  return { nodes, retries: carried.retries, retryAt: carried.retryAt };
}

/** "node a: <why>; node b: <why>" in node order. */
export function describeRefusals(r: Refusals, nodes: readonly string[]): string {
  return nodes.filter((n) => r.nodes.has(n)).map((n) => `node ${n}: ${r.nodes.get(n)}`).join('; ');
}
