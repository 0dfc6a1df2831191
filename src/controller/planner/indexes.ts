// Small indexes the planner keeps between passes, so an event finds the gateways and nodes it touches
// without a scan: pods by node, gateways by node selector (with the selector's matching nodes), and
// name → names relations.

import type { PodLike } from '../../api/types.ts';
import { matchesNodeSelector, type NodeState } from '../../core/index.ts';
import { podStateOf, type PodState } from '../../core/eligibility.ts';
import { podNodeName } from '../../core/util.ts';
import { byString } from '../../core/util.ts';

/** name → set of names, with the empty sets dropped. */
export class Relation {
  private readonly m = new Map<string, Set<string>>();

  add(k: string, v: string): void {
    const s = this.m.get(k);
    if (s) s.add(v);
    else this.m.set(k, new Set([v]));
  }

  delete(k: string, v: string): void {
    const s = this.m.get(k);
    if (s?.delete(v) && s.size === 0) this.m.delete(k);
  }

  get(k: string): ReadonlySet<string> {
    return this.m.get(k) ?? NONE;
  }

  /** The values of `k`, sorted. */
  sorted(k: string): string[] {
    return [...this.get(k)].sort(byString);
  }

  keys(): IterableIterator<string> {
    return this.m.keys();
  }
}

const NONE: ReadonlySet<string> = new Set();

/** One kind of pod (cilium-agent or egressgw agent), by node: what a node's pod state is made of. */
export class PodsByNode {
  private readonly byKey = new Map<string, { node: string; pod: PodLike }>();
  private readonly byNode = new Map<string, PodLike[]>();

  /** Record a pod (or its deletion); returns the nodes whose pods changed. */
  set(pod: PodLike, deleted: boolean): string[] {
    const key = `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`;
    const old = this.byKey.get(key);
    const touched: string[] = [];
    if (old) {
      this.byKey.delete(key);
      if (old.node !== '') {
        const list = (this.byNode.get(old.node) ?? []).filter((p) => p !== old.pod);
        if (list.length > 0) this.byNode.set(old.node, list);
        else this.byNode.delete(old.node);
        touched.push(old.node);
      }
    }
    if (deleted) return touched;
    const node = podNodeName(pod);
    this.byKey.set(key, { node, pod });
    if (node !== '') {
      this.byNode.set(node, [...(this.byNode.get(node) ?? []), pod]);
      if (!touched.includes(node)) touched.push(node);
    }
    return touched;
  }

  state(node: string): PodState {
    return podStateOf(this.byNode.get(node) ?? []);
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
