// Small indexes the planner keeps between passes, so an event finds the gateways and nodes it touches
// without a scan: pods by node, gateways by node selector (with the selector's matching nodes), and
// name → names relations.

import type { PodLike } from '../../api/types.ts';
import { matchesNodeSelector, type NodeState } from '../../core/index.ts';
import { podStateOf, type PodState } from '../../core/eligibility.ts';
import { podNodeName } from '../../core/util.ts';
import { byString } from '../../core/util.ts';

/**
 * name → set of names, with the empty sets dropped. Most names relate to one other (a gateway's uid,
 * its active node): those are held as the name itself, not as a Set of one.
 */
export class Relation {
  private readonly m = new Map<string, string | Set<string>>();

  add(k: string, v: string): void {
    const s = this.m.get(k);
    if (s === undefined) this.m.set(k, v);
    else if (typeof s === 'string') {
      if (s !== v) this.m.set(k, new Set([s, v]));
    } else s.add(v);
  }

  delete(k: string, v: string): void {
    const s = this.m.get(k);
    if (s === v) this.m.delete(k);
    else if (typeof s === 'object' && s.delete(v) && s.size === 1) this.m.set(k, s.values().next().value as string);
  }

  get(k: string): Iterable<string> {
    const s = this.m.get(k);
    return s === undefined ? NONE : typeof s === 'string' ? [s] : s;
  }

  has(k: string): boolean {
    return this.m.has(k);
  }

  /** The values of `k`, sorted. */
  sorted(k: string): string[] {
    const s = this.m.get(k);
    return s === undefined ? [] : typeof s === 'string' ? [s] : [...s].sort(byString);
  }

  keys(): IterableIterator<string> {
    return this.m.keys();
  }
}

const NONE: ReadonlySet<string> = new Set();

/**
 * One kind of pod (cilium-agent or egressgw agent), by node: how many healthy and unhealthy pods each
 * node runs, which is what its pod state is made of (see podStateOf).
 */
export class PodsByNode {
  /** namespace → name → pod (names are short-lived strings otherwise: no key strings built). */
  private readonly pods = new Map<string, Map<string, PodLike>>();
  /** node → healthy pods × 2^20 + unhealthy pods. */
  private readonly counts = new Map<string, number>();

  /** Record a pod (or its deletion); returns the nodes whose pods changed. */
  set(pod: PodLike, deleted: boolean): string[] {
    const ns = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    let byName = this.pods.get(ns);
    const old = byName?.get(name);
    const touched: string[] = [];
    if (old) {
      byName?.delete(name);
      if (this.count(old, -1)) touched.push(podNodeName(old));
    }
    if (deleted) return touched;
    if (!byName) this.pods.set(ns, (byName = new Map()));
    byName.set(name, pod);
    if (this.count(pod, 1) && !touched.includes(podNodeName(pod))) touched.push(podNodeName(pod));
    return touched;
  }

  private count(pod: PodLike, d: 1 | -1): boolean {
    const node = podNodeName(pod);
    if (node === '') return false;
    const c = (this.counts.get(node) ?? 0) + d * (podStateOf([pod]) === 'ok' ? 1 << 20 : 1);
    if (c === 0) this.counts.delete(node);
    else this.counts.set(node, c);
    return true;
  }

  /** No pod of this kind on any node (for the cilium-agent: the controller looks in the wrong place). */
  empty(): boolean {
    return this.counts.size === 0;
  }

  state(node: string): PodState {
    const c = this.counts.get(node) ?? 0;
    return c >= 1 << 20 ? 'ok' : c > 0 ? 'bad' : 'none';
  }
}

/** Gateways sharing one node selector share its candidate list (the nodes matching it, in name order). */
export interface SelectorGroup {
  readonly selector: Readonly<Record<string, string>>;
  /** Replaced, never changed: plans hold on to it. */
  names: readonly string[];
  readonly gateways: Set<string>;
  /** How many of `gateways` are valid in their current plan (their candidates carry the member label). */
  valid: number;
}

export function selectorKey(selector: Readonly<Record<string, string>>): string {
  return Object.keys(selector)
    .sort(byString)
    .map((k) => `${k}\u0000${selector[k]}`)
    .join('\u0001');
}

export function sortedHas(names: readonly string[], name: string): boolean {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const m = names[mid] as string;
    if (m === name) return true;
    if (m < name) lo = mid + 1;
    else hi = mid;
  }
  return false;
}

/** The selector groups, and the membership changes of one pass (applied at once by `commit`). */
export class SelectorGroups {
  readonly byKey = new Map<string, SelectorGroup>();
  private readonly pending = new Map<SelectorGroup, { add: string[]; remove: Set<string> }>();

  /** The group of `selector`, created from the current node states when new. */
  join(key: string, selector: Readonly<Record<string, string>>, gateway: string, states: Iterable<NodeState>): SelectorGroup {
    let g = this.byKey.get(key);
    if (!g) {
      const names: string[] = [];
      for (const st of states) if (matchesNodeSelector(st.labels, selector)) names.push(st.name);
      g = { selector, names: names.sort(byString), gateways: new Set(), valid: 0 };
      this.byKey.set(key, g);
    }
    g.gateways.add(gateway);
    return g;
  }

  leave(key: string, gateway: string): void {
    const g = this.byKey.get(key);
    if (!g) return;
    g.gateways.delete(gateway);
    this.dropIfUnused(key, g);
  }

  /** A valid plan of one of the group's gateways came (+1) or went (-1). Returns the group's new count. */
  countValid(key: string, g: SelectorGroup, delta: 1 | -1): number {
    g.valid += delta;
    this.dropIfUnused(key, g);
    return g.valid;
  }

  private dropIfUnused(key: string, g: SelectorGroup): void {
    if (g.gateways.size === 0 && g.valid === 0 && this.byKey.get(key) === g) this.byKey.delete(key);
  }

  /**
   * A node's state changed from `old` to `now`: the groups it was or is in (their gateways read its
   * state), and which of them it joins or leaves (recorded until `commit`).
   */
  nodeChanged(old: NodeState | undefined, now: NodeState | undefined, touched: (g: SelectorGroup, membership: boolean) => void): void {
    for (const g of this.byKey.values()) {
      const was = old !== undefined && matchesNodeSelector(old.labels, g.selector);
      const is = now !== undefined && matchesNodeSelector(now.labels, g.selector);
      if (!was && !is) continue;
      if (was !== is) {
        let p = this.pending.get(g);
        if (!p) this.pending.set(g, (p = { add: [], remove: new Set() }));
        const name = (now ?? old)?.name as string;
        if (is) p.add.push(name);
        else p.remove.add(name);
      }
      touched(g, was !== is);
    }
  }

  /** Apply the recorded joins and leaves: each changed group gets a new names list. */
  commit(): void {
    for (const [g, p] of this.pending) g.names = [...g.names.filter((n) => !p.remove.has(n)), ...p.add].sort(byString);
    this.pending.clear();
  }

  /** Does some group with a valid gateway select this node? */
  selected(node: string): boolean {
    for (const g of this.byKey.values()) if (g.valid > 0 && sortedHas(g.names, node)) return true;
    return false;
  }
}
