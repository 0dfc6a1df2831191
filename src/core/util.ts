// Small pure helpers shared by the core: hashing, readiness derivation, safe field access, JSON equality.

import { createHash } from 'node:crypto';
import type { NodeLike, PodLike } from '../api/types.ts';

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Instance name `<gateway>-<first 10 hex of sha256("<gateway>#<node>")>`, as the reference names them
 * (reference §2.3), so instances survive a migration from it.
 */
export function instanceName(gateway: string, node: string): string {
  return `${gateway}-${sha256Hex(`${gateway}#${node}`).slice(0, 10)}`;
}

/** Election tie-break key: lowest sha256(G + "#" + node) wins (design §4). */
export function electionKey(gateway: string, node: string): string {
  return sha256Hex(`${gateway}#${node}`);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function isStringMap(v: unknown): v is Record<string, string> {
  if (!isObject(v)) return false;
  for (const k in v) if (typeof v[k] !== 'string') return false;
  return true;
}

/** The object's name, or '' when the object is malformed (no metadata or no string name). */
export function nameOf(obj: unknown): string {
  if (!isObject(obj)) return '';
  const md = obj['metadata'];
  if (!isObject(md)) return '';
  const n = md['name'];
  return typeof n === 'string' ? n : '';
}

/** Our labels on a node-like object, tolerant of malformed metadata. */
export function labelsOf(obj: { metadata?: unknown } | undefined): Record<string, string> {
  const md = obj?.metadata;
  if (!isObject(md)) return {};
  const l = md['labels'];
  return isObject(l) ? (l as Record<string, string>) : {};
}

export function annotationsOf(obj: { metadata?: unknown } | undefined): Record<string, string> {
  const md = obj?.metadata;
  if (!isObject(md)) return {};
  const a = md['annotations'];
  return isObject(a) ? (a as Record<string, string>) : {};
}

function readyConditionStatus(status: unknown): string | undefined {
  if (!isObject(status)) return undefined;
  const conds = status['conditions'];
  if (!Array.isArray(conds)) return undefined;
  for (const c of conds) {
    if (isObject(c) && c['type'] === 'Ready') return typeof c['status'] === 'string' ? c['status'] : '';
  }
  return undefined;
}

/**
 * Node readiness as the reference derives it (reference §3.3): Ready unless a `Ready` condition exists
 * with a status other than "True". A node without a Ready condition counts as Ready (R32).
 */
export function isNodeReady(node: NodeLike): boolean {
  const s = readyConditionStatus((node as { status?: unknown }).status);
  return s === undefined || s === 'True';
}

/** Pod readiness, same rule as nodes: a pod without a Ready condition counts as Ready. */
export function isPodReady(pod: PodLike): boolean {
  const s = readyConditionStatus((pod as { status?: unknown }).status);
  return s === undefined || s === 'True';
}

export function isBeingDeleted(obj: { metadata?: unknown }): boolean {
  const md = obj.metadata;
  return isObject(md) && typeof md['deletionTimestamp'] === 'string' && md['deletionTimestamp'] !== '';
}

export function isNodeCordoned(node: NodeLike): boolean {
  const spec = (node as { spec?: unknown }).spec;
  return isObject(spec) && spec['unschedulable'] === true;
}

/** The node a pod runs on ('' when unscheduled or malformed). */
export function podNodeName(pod: PodLike): string {
  const spec = (pod as { spec?: unknown }).spec;
  if (!isObject(spec)) return '';
  return typeof spec['nodeName'] === 'string' ? spec['nodeName'] : '';
}

/**
 * Structural equality of JSON-like values. A key whose value is `undefined` counts as absent, so an
 * object built with optional fields compares equal to the API server's copy without them. Cheaper than
 * JSON.stringify in the hot paths (10,000 policies per pass).
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  let na = 0;
  for (const k in ao) {
    if (ao[k] === undefined) continue;
    na++;
    if (!jsonEqual(ao[k], bo[k])) return false;
  }
  let nb = 0;
  for (const k in bo) if (bo[k] !== undefined) nb++;
  return na === nb;
}

export function toIso(ms: number): string {
  const d = new Date(ms);
  return Number.isFinite(d.getTime()) ? d.toISOString() : new Date(0).toISOString();
}

/** Parse an RFC 3339 timestamp; NaN when absent or malformed. */
export function parseTime(v: unknown): number {
  return typeof v === 'string' ? Date.parse(v) : Number.NaN;
}

export function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * `fn` of each object with a usable name, in name order, first occurrence of a duplicated name only.
 * Returns true when the list already was in strictly increasing name order (what the controller's
 * snapshot gives): then nothing is built or sorted.
 */
export function forEachByName<T>(items: readonly T[], fn: (name: string, item: T) => void): boolean {
  let last = '';
  let increasing = true;
  for (const item of items) {
    const n = nameOf(item);
    if (n === '') continue;
    if (last !== '' && byString(last, n) >= 0) {
      increasing = false;
      break;
    }
    last = n;
  }
  if (increasing) {
    for (const item of items) {
      const n = nameOf(item);
      if (n !== '') fn(n, item);
    }
    return true;
  }
  const named: Array<{ name: string; item: T; i: number }> = [];
  items.forEach((item, i) => {
    const n = nameOf(item);
    if (n !== '') named.push({ name: n, item, i });
  });
  named.sort((a, b) => byString(a.name, b.name) || a.i - b.i);
  let prev: string | undefined;
  for (const x of named) {
    if (x.name === prev) continue;
    prev = x.name;
    fn(x.name, x.item);
  }
  return false;
}

/** Shallow equality of two label maps. */
export function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  if (a === b) return true;
  let n = 0;
  for (const k in a) {
    if (a[k] !== b[k] || !Object.hasOwn(b, k)) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
}

/** The same strings in the same order. */
export function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
