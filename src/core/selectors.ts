// Label selectors: exact matchLabels for gateway node selectors, full LabelSelector for pods, and an
// index of nodes by label so a pass does not scan every node for every gateway.

import type { LabelSelector } from '../api/types.ts';
import { byString, isObject } from './util.ts';

/**
 * Gateway `spec.nodeSelector`: every key present with an equal value. Empty or absent matches every
 * node (reference §3.4; design §3).
 */
export function matchesNodeSelector(
  labels: Readonly<Record<string, string>> | undefined,
  selector: Readonly<Record<string, string>> | undefined,
): boolean {
  if (!selector) return true;
  for (const k in selector) {
    if (!labels || !Object.hasOwn(labels, k) || labels[k] !== selector[k]) return false;
  }
  return true;
}

/**
 * A Kubernetes LabelSelector (matchLabels AND matchExpressions). As in Kubernetes, a null/absent
 * selector matches nothing and an empty one matches everything; an unknown operator matches nothing.
 */
export function matchesLabelSelector(
  labels: Readonly<Record<string, string>> | undefined,
  selector: LabelSelector | null | undefined,
): boolean {
  if (!isObject(selector)) return false;
  const l = labels ?? {};
  const ml = selector.matchLabels;
  if (isObject(ml)) {
    for (const k in ml) if (!Object.hasOwn(l, k) || l[k] !== ml[k]) return false;
  }
  const me = selector.matchExpressions;
  if (Array.isArray(me)) {
    for (const req of me) {
      if (!isObject(req) || typeof req.key !== 'string') return false;
      const has = Object.hasOwn(l, req.key);
      const values = Array.isArray(req.values) ? req.values : [];
      switch (req.operator) {
        case 'In':
          if (!has || !values.includes(l[req.key] as string)) return false;
          break;
        case 'NotIn':
          if (has && values.includes(l[req.key] as string)) return false;
          break;
        case 'Exists':
          if (!has) return false;
          break;
        case 'DoesNotExist':
          if (has) return false;
          break;
        default:
          return false;
      }
    }
  }
  return true;
}

const OPERATORS = new Set(['In', 'NotIn', 'Exists', 'DoesNotExist']);

/**
 * Problems that would make Cilium's CRD (or Kubernetes) reject a LabelSelector, as "path: message".
 * Cilium's schema has an operator enum that the policy CRD lacks (reference §2.2).
 */
export function validateLabelSelector(sel: unknown, path: string): string[] {
  const errs: string[] = [];
  if (!isObject(sel)) return [`${path}: must be an object`];
  const ml = sel['matchLabels'];
  if (ml !== undefined && ml !== null) {
    if (!isObject(ml)) errs.push(`${path}.matchLabels: must be a map of strings`);
    else for (const k in ml) if (typeof ml[k] !== 'string') errs.push(`${path}.matchLabels.${k}: must be a string`);
  }
  const me = sel['matchExpressions'];
  if (me !== undefined && me !== null) {
    if (!Array.isArray(me)) errs.push(`${path}.matchExpressions: must be a list`);
    else {
      me.forEach((req: unknown, i: number) => {
        const p = `${path}.matchExpressions[${i}]`;
        if (!isObject(req)) {
          errs.push(`${p}: must be an object`);
          return;
        }
        if (typeof req['key'] !== 'string' || req['key'] === '') errs.push(`${p}.key: required`);
        const op = req['operator'];
        const values = req['values'];
        if (typeof op !== 'string' || !OPERATORS.has(op)) {
          errs.push(`${p}.operator: must be one of In, NotIn, Exists, DoesNotExist`);
          return;
        }
        if (values !== undefined && values !== null && (!Array.isArray(values) || values.some((v) => typeof v !== 'string'))) {
          errs.push(`${p}.values: must be a list of strings`);
          return;
        }
        const n = Array.isArray(values) ? values.length : 0;
        if ((op === 'In' || op === 'NotIn') && n === 0) errs.push(`${p}.values: must be non-empty for ${op}`);
        if ((op === 'Exists' || op === 'DoesNotExist') && n > 0) errs.push(`${p}.values: must be empty for ${op}`);
      });
    }
  }
  return errs;
}

/**
 * Nodes indexed by label, so that matching a selector costs the size of its smallest label bucket, not
 * the number of nodes. Built once, then read only; results are in node-name order.
 */
export class NodeLabelIndex {
  readonly #names: readonly string[];
  readonly #labels: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** label key → value → node names (in name order). */
  readonly #byKey = new Map<string, Map<string, string[]>>();

  /** `labels`: node name → labels; iteration order does not matter. */
  constructor(labels: ReadonlyMap<string, Readonly<Record<string, string>>>) {
    this.#labels = labels;
    this.#names = [...labels.keys()].sort(byString);
    for (const name of this.#names) {
      const l = labels.get(name) as Readonly<Record<string, string>>;
      for (const k in l) {
        let b = this.#byKey.get(k);
        if (!b) this.#byKey.set(k, (b = new Map()));
        const list = b.get(l[k] as string);
        if (list) list.push(name);
        else b.set(l[k] as string, [name]);
      }
    }
  }

  get all(): readonly string[] {
    return this.#names;
  }

  /** Node names (sorted) matching an exact-match node selector; empty selector → all nodes. */
  match(selector: Readonly<Record<string, string>>): readonly string[] {
    let smallest: readonly string[] | undefined;
    for (const k in selector) {
      const list = this.#byKey.get(k)?.get(selector[k] as string) ?? [];
      if (!smallest || list.length < smallest.length) smallest = list;
    }
    if (!smallest) return this.#names;
    return smallest.filter((n) => matchesNodeSelector(this.#labels.get(n), selector));
  }
}

/** Cilium's pseudo-label: a podSelector sees the pod's namespace under this key (reference §2.2). */
export const NAMESPACE_PSEUDO_LABEL = 'io.kubernetes.pod.namespace';

/** What a policy's selectors see of a pod: its labels, its namespace, and its namespace's labels. */
export interface PodSelectionView {
  namespace: string;
  labels: Readonly<Record<string, string>> | undefined;
  /** The Namespace object's labels (absent when the Namespace is unknown). */
  namespaceLabels: Readonly<Record<string, string>> | undefined;
}

/**
 * Whether any of a policy's selectors matches the pod, as Cilium matches them: the podSelector sees the
 * pod's labels plus `io.kubernetes.pod.namespace`; a namespaceSelector (ours) must also match the
 * namespace's labels (plus `kubernetes.io/metadata.name`, which the API server sets). An item with only a
 * namespaceSelector selects every pod of those namespaces. Used by the CLI's counts and the Linux data plane.
 */
export function podSelected(
  selectors: ReadonlyArray<{ podSelector?: LabelSelector; namespaceSelector?: LabelSelector } | null | undefined> | undefined,
  pod: PodSelectionView,
): boolean {
  if (!Array.isArray(selectors) || selectors.length === 0) return false;
  const labels = { ...(pod.labels ?? {}), [NAMESPACE_PSEUDO_LABEL]: pod.namespace };
  let nsLabels: Record<string, string> | undefined;
  return selectors.some((s) => {
    if (!matchesLabelSelector(labels, s?.podSelector ?? {})) return false;
    if (s?.namespaceSelector === undefined) return true;
    nsLabels ??= { 'kubernetes.io/metadata.name': pod.namespace, ...(pod.namespaceLabels ?? {}) };
    return matchesLabelSelector(nsLabels, s.namespaceSelector);
  });
}
