// Equality of observed and desired objects, field by field: every pass compares ~10,000 CEGPs and
// statuses, so this avoids JSON.stringify and intermediate copies.

import type { CiliumEgressGatewayPolicy } from '../api/types.ts';
import { isObject, jsonEqual, labelsOf } from './util.ts';

function conditionsEqual(a: unknown, b: unknown): boolean {
  if (!Array.isArray(a) || !Array.isArray(b)) return jsonEqual(a, b);
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x: unknown = a[i];
    const y: unknown = b[i];
    if (!isObject(x) || !isObject(y)) {
      if (!jsonEqual(x, y)) return false;
      continue;
    }
    if (!shallowEqualExcept(x, y, 'lastHeartbeatTime')) return false;
  }
  return true;
}

/** Key-by-key equality (values compared as JSON), skipping one key and keys whose value is undefined. */
function shallowEqualExcept(a: Record<string, unknown>, b: Record<string, unknown>, skip: string): boolean {
  let na = 0;
  for (const k in a) {
    if (k === skip || a[k] === undefined) continue;
    na++;
    const x = a[k];
    const y = b[k];
    if (x !== y && (typeof x !== 'object' || !jsonEqual(x, y))) return false;
  }
  let nb = 0;
  for (const k in b) if (k !== skip && b[k] !== undefined) nb++;
  return na === nb;
}

/** Status equality ignoring `lastHeartbeatTime`, which is refreshed only when the status is written anyway. */
export function statusEqual(a: unknown, b: unknown): boolean {
  // The core hands back the observed status itself when nothing changed.
  if (a === b) return true;
  if (!isObject(a) || !isObject(b)) return a === b;
  if (!conditionsEqual(a['conditions'], b['conditions'])) return false;
  return shallowEqualExcept(a, b, 'conditions');
}

function stringsEqual(a: unknown, b: readonly string[] | undefined): boolean {
  if (b === undefined) return a === undefined;
  if (!Array.isArray(a) || a.length !== b.length) return false;
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function cegpUpToDate(observed: CiliumEgressGatewayPolicy, desired: CiliumEgressGatewayPolicy): boolean {
  if (observed === desired) return true;
  const l = labelsOf(observed);
  const dl = desired.metadata.labels ?? {};
  for (const k in dl) if (l[k] !== dl[k]) return false;
  const os: unknown = (observed as { spec?: unknown }).spec;
  const ds = desired.spec;
  if (!isObject(os) || !ds) return os === ds;
  // Field by field: 10,000 policies are compared on every pass.
  let keys = 0;
  for (const k in os) if (os[k] !== undefined) keys++;
  if (keys !== (ds.excludedCIDRs === undefined ? 3 : 4)) return false;
  if (!stringsEqual(os['destinationCIDRs'], ds.destinationCIDRs) || !stringsEqual(os['excludedCIDRs'], ds.excludedCIDRs)) return false;
  return jsonEqual(os['egressGateway'], ds.egressGateway) && jsonEqual(os['selectors'], ds.selectors);
}

