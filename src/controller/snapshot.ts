// From informer caches to the core's Snapshot. The only stateful part is heartbeat tracking: the
// controller times agent heartbeats on its own clock, from when it last saw a Lease change (as
// client-go leader election does), so clock skew between nodes and the controller does not matter.

import type {
  CiliumEgressGatewayPolicy,
  CiliumNodeLike,
  EgressGateway,
  EgressGatewayInstance,
  EgressGatewayPolicy,
  LeaseLike,
  NodeLike,
  PodLike,
} from '../api/types.ts';
import { ASSIGNED_AT_ANNOTATION, FENCE_AFTER_MS_ANNOTATION, HANDOVER_TO_ANNOTATION, LEASE_DURATION_MS_ANNOTATION, UPLINKS_ANNOTATION, heartbeatLeaseName } from '../api/names.ts';
import { trustedLeaseMs } from '../api/fencing.ts';
import type { Heartbeat, Snapshot, UplinkState } from '../core/types.ts';
import { parseTime } from '../kube/time.ts';
import { parseRefusals, refusalBackoffMs } from '../core/refusals.ts';

const LEASE_PREFIX = heartbeatLeaseName('');

/** The node a heartbeat Lease belongs to, or undefined for other Leases in the namespace. */
export function nodeOfHeartbeatLease(name: string): string | undefined {
  if (!name.startsWith(LEASE_PREFIX) || name.length === LEASE_PREFIX.length) return undefined;
  const node = name.slice(LEASE_PREFIX.length);
  return heartbeatLeaseName(node) === name ? node : undefined;
}

/** The agent's uplink report; anything malformed is dropped (a bad annotation must not break a pass). */
export function parseUplinks(raw: string | undefined): Record<string, UplinkState> | undefined {
  if (raw === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const out: Record<string, UplinkState> = {};
  const strings = (a: unknown): a is string[] => Array.isArray(a) && a.every((x) => typeof x === 'string');
  for (const [name, s] of Object.entries(v as Record<string, unknown>)) {
    if (!s || typeof s !== 'object') return undefined;
    const st = s as { up?: unknown; ipv4?: unknown; ipv6?: unknown };
    if (typeof st.up !== 'boolean') return undefined;
    if (st.ipv4 !== undefined && !strings(st.ipv4)) return undefined;
    if (st.ipv6 !== undefined && !strings(st.ipv6)) return undefined;
    out[name] = { up: st.up, ...(st.ipv4 ? { ipv4: st.ipv4 } : {}), ...(st.ipv6 ? { ipv6: st.ipv6 } : {}) };
  }
  return out;
}

interface Tracked {
  // The renewal record (holder, renew time): compared field by field, so a renewal builds no string.
  holder: unknown;
  renewTime: unknown;
  uplinksRaw: string | undefined;
  /** What the core sees of this node's heartbeat: one object per node, updated in place (see heartbeats()). */
  hb: Heartbeat;
}

/**
 * Heartbeat Leases → Heartbeats. `observe` is fed from the Lease informer's events; it reports
 * whether the change can matter to a decision (so plain renewals of a live heartbeat need not
 * trigger a reconcile pass: they only push its expiry further out).
 */
/**
 * How long one renewal of a heartbeat Lease counts. The agent may state it in milliseconds in an
 * annotation (the spec field has whole seconds only); it is trusted when it is a whole number of
 * at least 100 ms and not longer than `leaseDurationSeconds`, which stays the upper bound so a
 * typo cannot make a dead node look alive for longer than the Lease itself says. `defaultMs`
 * (--heartbeat-duration) applies only to a Lease that states no duration at all.
 *
 * It is never shorter than the agent's announced fence-after plus the margin (src/api/fencing.ts):
 * before that, the node's kernel switch may still be open, and electing another node would make two
 * owners. Our agents refuse to start with such flags; this guards against any other writer.
 */
export function leaseDurationMs(lease: LeaseLike, defaultMs: number): number {
  const annotations = lease.metadata?.annotations;
  const secs = lease.spec?.leaseDurationSeconds;
  const fromSpec = typeof secs === 'number' && secs > 0 ? secs * 1000 : defaultMs;
  const stated = msAnnotation(annotations?.[LEASE_DURATION_MS_ANNOTATION]);
  const lease_ = stated !== undefined && stated <= fromSpec ? stated : fromSpec;
  return trustedLeaseMs(lease_, msAnnotation(annotations?.[FENCE_AFTER_MS_ANNOTATION]));
}

/** A whole number of milliseconds, 100 ms to 999 s, as our agents write them; anything else is ignored. */
function msAnnotation(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^\d{3,6}$/.test(raw)) return undefined;
  const ms = Number(raw);
  return ms >= 100 ? ms : undefined;
}

export class HeartbeatTracker {
  private readonly byNode = new Map<string, Tracked>();
  private readonly defaultDurationMs: number;
  /** Every node's Heartbeat record in node order; rebuilt only when a node is added or forgotten. */
  private list: Heartbeat[] = [];
  private stale = false;

  constructor(defaultDurationMs: number) {
    this.defaultDurationMs = defaultDurationMs;
  }

  observe(lease: LeaseLike, now: number): boolean {
    const node = nodeOfHeartbeatLease(lease.metadata?.name ?? '');
    if (node === undefined) return false;
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renewTime = spec.renewTime ?? '';
    const durationMs = leaseDurationMs(lease, this.defaultDurationMs);
    const uplinksRaw = lease.metadata.annotations?.[UPLINKS_ANNOTATION];
    const prev = this.byNode.get(node);
    if (!prev) {
      const hb: Heartbeat = { node, observedAt: now, durationMs };
      const uplinks = parseUplinks(uplinksRaw);
      if (uplinks) hb.uplinks = uplinks;
      this.byNode.set(node, { holder, renewTime, uplinksRaw, hb });
      this.stale = true;
      return true;
    }
    const hb = prev.hb;
    const changedRecord = !sameValue(prev.holder, holder) || !sameValue(prev.renewTime, renewTime);
    if (!changedRecord && hb.durationMs === durationMs && prev.uplinksRaw === uplinksRaw) return false;
    const wasLive = now - hb.observedAt < hb.durationMs;
    // A renewal of a live heartbeat with nothing else changed decides nothing new.
    const matters = !wasLive || hb.durationMs !== durationMs || prev.uplinksRaw !== uplinksRaw;
    // Updated in place: a renewal every few hundred ms per node allocates nothing here. The core reads
    // heartbeats during a pass only and keeps none of these objects (it keeps the parsed uplinks,
    // which are replaced, never changed).
    prev.holder = holder;
    prev.renewTime = renewTime;
    if (changedRecord) hb.observedAt = now;
    hb.durationMs = durationMs;
    if (prev.uplinksRaw !== uplinksRaw) {
      prev.uplinksRaw = uplinksRaw;
      const uplinks = parseUplinks(uplinksRaw);
      if (uplinks) hb.uplinks = uplinks;
      else delete hb.uplinks;
    }
    return matters;
  }

  forget(lease: LeaseLike): boolean {
    const node = nodeOfHeartbeatLease(lease.metadata?.name ?? '');
    const gone = node !== undefined && this.byNode.delete(node);
    if (gone) this.stale = true;
    return gone;
  }

  /**
   * Sorted by node. The same array and the same records from call to call: a renewal updates its
   * node's record in place, so read them during a pass and keep none of them.
   */
  heartbeats(): Heartbeat[] {
    if (!this.stale) return this.list;
    this.stale = false;
    const out: Heartbeat[] = [];
    for (const t of this.byNode.values()) out.push(t.hb);
    this.list = out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    return this.list;
  }

  /** The earliest future moment a live heartbeat expires, if any. */
  nextExpiry(now: number): number | undefined {
    let next: number | undefined;
    for (const { hb } of this.byNode.values()) {
      const at = hb.observedAt + hb.durationMs;
      if (at > now && (next === undefined || at < next)) next = at;
    }
    return next;
  }
}

/**
 * Equal renewal fields. Strings (the API's JSON) compare by value; anything else (a client-node Date,
 * should a caller pass typed objects) by its JSON form, as the string record this replaces did.
 */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === 'string' || typeof b === 'string') return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

function isReady(conditions: Array<{ type: string; status: string }> | undefined): boolean {
  return conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/**
 * The earliest future moment an unconfirmed instance's handover times out, or the nodes a refused VIP
 * sequence remembers are tried again (core/refusals.ts: a backoff after that timeout), if any.
 */
export function nextHandoverTimeout(instances: readonly EgressGatewayInstance[], timeoutMs: number, now: number): number | undefined {
  let next: number | undefined;
  for (const i of instances) {
    // The old owner of a handover under way runs no clock (core/election.ts, handoverClocks).
    if (i.metadata.deletionTimestamp || isReady(i.status?.conditions) || i.metadata.annotations?.[HANDOVER_TO_ANNOTATION] !== undefined) continue;
    const assigned = parseTime(i.metadata.annotations?.[ASSIGNED_AT_ANNOTATION]);
    if (assigned === undefined) continue;
    const retries = parseRefusals(i)?.retries ?? 0;
    for (const at of [assigned + timeoutMs, assigned + timeoutMs + refusalBackoffMs(retries)]) {
      if (at > now && (next === undefined || at < next)) next = at;
    }
  }
  return next;
}

export interface SnapshotSources {
  nodes: () => readonly NodeLike[];
  ciliumNodes: () => readonly CiliumNodeLike[];
  ciliumAgentPods: () => readonly PodLike[];
  agentPods: () => readonly PodLike[];
  gateways: () => readonly EgressGateway[];
  policies: () => readonly EgressGatewayPolicy[];
  instances: () => readonly EgressGatewayInstance[];
  cegps: () => readonly CiliumEgressGatewayPolicy[];
  heartbeats: HeartbeatTracker;
  /**
   * A counter per list that changes whenever that cache changes (Informer.version). With it, an
   * unchanged cache is neither listed nor sorted again.
   */
  versions?: Partial<Record<ListName, () => number>>;
}

type ListName = Exclude<keyof SnapshotSources, 'heartbeats' | 'versions'>;
const LISTS: readonly ListName[] = ['nodes', 'ciliumNodes', 'ciliumAgentPods', 'agentPods', 'gateways', 'policies', 'instances', 'cegps'];

type Named = { metadata: { name: string; namespace?: string } };

/** Namespace, then name; compares in place (no key strings built per comparison). */
const byName = (a: Named, b: Named): number => {
  const na = a.metadata.namespace ?? '';
  const nb = b.metadata.namespace ?? '';
  if (na !== nb) return na < nb ? -1 : 1;
  const ka = a.metadata.name;
  const kb = b.metadata.name;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

/**
 * The list in name order. Informer caches keep insertion order, which usually is name order already:
 * then the list itself (each list() call builds a new array, which nobody else holds), else a sorted copy.
 */
function sortedCopy<T extends Named>(list: readonly T[]): readonly T[] {
  for (let i = 1; i < list.length; i++) if (byName(list[i - 1] as T, list[i] as T) > 0) return [...list].sort(byName);
  return list;
}

/**
 * Builds the core's Snapshot, remembering each sorted list: a cache whose version did not move (or,
 * without versions, whose list holds the same objects in the same order) gives the same array as the
 * last pass. The arrays handed out are never mutated (the core only reads them).
 */
export class SnapshotBuilder {
  private readonly src: SnapshotSources;
  private readonly memo = new Map<ListName, { version: number | undefined; raw: readonly unknown[]; sorted: readonly unknown[] }>();

  constructor(src: SnapshotSources) {
    this.src = src;
  }

  private list<K extends ListName>(name: K): ReturnType<SnapshotSources[K]> {
    const prev = this.memo.get(name);
    const version = this.src.versions?.[name]?.();
    if (prev && version !== undefined && prev.version === version) return prev.sorted as ReturnType<SnapshotSources[K]>;
    const raw = this.src[name]() as readonly Named[];
    if (prev && version === undefined && sameObjects(prev.raw, raw)) return prev.sorted as ReturnType<SnapshotSources[K]>;
    const sorted = sortedCopy(raw);
    this.memo.set(name, { version, raw, sorted });
    return sorted as ReturnType<SnapshotSources[K]>;
  }

  build(now: number): Snapshot {
    const s = { now, heartbeats: this.src.heartbeats.heartbeats() } as Record<string, unknown>;
    for (const name of LISTS) s[name] = this.list(name);
    return s as unknown as Snapshot;
  }
}

function sameObjects(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A cache as the snapshot builder needs it: its objects and a counter that moves on every change (Informer). */
export interface VersionedCache<T> {
  list(): readonly T[];
  readonly version: number;
}

/** The snapshot sources of a set of versioned caches, one per list (the controller's informers). */
export function sourcesFromCaches(
  caches: { [K in ListName]: VersionedCache<ReturnType<SnapshotSources[K]>[number]> },
  heartbeats: HeartbeatTracker,
): SnapshotSources {
  const src: Record<string, unknown> = { heartbeats };
  const versions: Partial<Record<ListName, () => number>> = {};
  for (const name of LISTS) {
    const cache = caches[name];
    src[name] = () => cache.list();
    versions[name] = () => cache.version;
  }
  src.versions = versions;
  return src as unknown as SnapshotSources;
}

/** Sorted copies, so the core sees the same input for the same cluster whatever the cache order. */
export function buildSnapshot(src: SnapshotSources, now: number): Snapshot {
  return new SnapshotBuilder(src).build(now);
}
