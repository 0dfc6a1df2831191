// Executes the core's writes, in the order given (make before break). Nothing here decides: every
// write is the core's; this module only knows how each kind maps to an API call and which failures
// are fine (a 404 that names an object we wanted gone; a 404 for a resource type that is not served
// right now, e.g. a CRD after an API server restart, is a failure like any other and is retried).
//
// Failure policy:
//  - 409 Conflict (stale cache, concurrent writer): counted, and the pass is requeued at once on
//    fresh state;
//  - anything else: logged with the object, counted in egressgw_write_errors_total, and the pass is
//    retried with backoff. Never thrown to the caller.
//  - once a "make" write (label addition, instance create/update) failed, the "break" writes that
//    follow in the same pass (label removals, deletions, finalizer releases) are held back until a
//    later pass succeeds, so a failed addition never leaves a gateway without its new node AND
//    without its old one.

import type { EgressGateway, EgressGatewayInstance, EgressGatewayPolicy } from '../api/types.ts';
import {
  INSTANCE_FINALIZER,
  INTERNAL_API_VERSION,
  KIND_CEGP,
  KIND_DATAPLANE,
  KIND_INSTANCE,
  MOVE_TO_ANNOTATION,
  OWNED_LABELS,
} from '../api/names.ts';
import type { Write } from '../core/types.ts';
import { instanceAnnotations } from '../core/instances.ts';
import type { KubeClient } from '../kube/client.ts';
import { isObjectGone, isStatus, isUnserved } from '../kube/client.ts';
import type { EventRecorder } from '../kube/events.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { CLEAR_FINALIZERS_PATCH, annotationsPatch, labelsPatch, mergePatchIfExists } from '../kube/patch.ts';
import { CEGPS, CILIUM_NODES, DATAPLANES, GATEWAYS, INSTANCES, NODES, POLICIES } from '../kube/resources.ts';
import type { ControllerMetrics } from './metrics.ts';

export const FIELD_MANAGER = 'egressgw-controller';

export interface ApplyContext {
  client: KubeClient;
  recorder: EventRecorder;
  metrics: ControllerMetrics;
  log: Logger;
  /** Checked before every write: a replica that lost the Lease stops mid-pass. */
  mayWrite: () => boolean;
  /** Cached objects, to keep unrelated fields when replacing and to clear stale status fields. */
  cached: {
    instance: (name: string) => EgressGatewayInstance | undefined;
    gateway: (name: string) => EgressGateway | undefined;
    policy: (name: string) => EgressGatewayPolicy | undefined;
  };
}

export interface ApplyResult {
  attempted: number;
  succeeded: number;
  failed: number;
  conflicts: number;
  /** Break-writes held back because a make-write failed earlier in the pass. */
  deferred: number;
  /** The pass stopped because this replica may no longer write. */
  aborted: boolean;
}

const BREAK_KINDS = new Set<Write['kind']>(['removeLabels', 'deleteInstance', 'releaseFinalizer', 'deleteCEGP', 'deleteDataplane']);
const MAKE_KINDS = new Set<Write['kind']>(['addLabels', 'createInstance', 'updateInstance']);

/** A short description of a write for logs. */
export function describeWrite(w: Write): string {
  switch (w.kind) {
    case 'addLabels':
    case 'removeLabels':
      return `${w.kind} ${w.target}/${w.name} [${w.keys.join(', ')}]`;
    case 'createInstance':
    case 'updateInstance':
    case 'applyCEGP':
    case 'applyDataplane':
      return `${w.kind} ${w.object.metadata.name}`;
    case 'deleteInstance':
    case 'releaseFinalizer':
    case 'deleteCEGP':
    case 'deleteDataplane':
    case 'gatewayStatus':
    case 'policyStatus':
      return `${w.kind} ${w.name}`;
    case 'clearMoveRequest':
      return `${w.kind} ${w.gateway}`;
    case 'event':
      return `event ${w.reason} ${w.regarding.kind}/${w.regarding.name}`;
  }
}

export async function applyWrites(ctx: ApplyContext, writes: readonly Write[]): Promise<ApplyResult> {
  const res: ApplyResult = { attempted: 0, succeeded: 0, failed: 0, conflicts: 0, deferred: 0, aborted: false };
  let makeFailed = false;
  for (const w of writes) {
    if (!ctx.mayWrite()) {
      res.aborted = true;
      ctx.log.warn({ remaining: writes.length - res.attempted - res.deferred }, 'no longer leader; dropping the rest of the pass');
      break;
    }
    if (makeFailed && BREAK_KINDS.has(w.kind)) {
      res.deferred++;
      ctx.log.info({ write: describeWrite(w) }, 'held back: an earlier addition in this pass failed');
      continue;
    }
    res.attempted++;
    try {
      await applyOne(ctx, w);
      res.succeeded++;
      ctx.metrics.writes.inc({ kind: w.kind });
      ctx.log.debug({ write: describeWrite(w) }, 'write');
    } catch (err) {
      res.failed++;
      ctx.metrics.writeErrors.inc({ kind: w.kind });
      if (isStatus(err, 409)) {
        res.conflicts++;
        ctx.log.info({ write: describeWrite(w), ...errFields(err) }, 'write conflict; will retry on fresh state');
      } else if (isUnserved(err)) {
        // Not "the object is gone": the resource type itself answers 404 (its CRD is not served yet after
        // an API server restart). Nothing was done; the pass is retried with backoff.
        ctx.log.warn({ write: describeWrite(w), ...errFields(err) }, 'resource not served right now (404 without an object); will retry');
      } else {
        ctx.log.error({ write: describeWrite(w), ...errFields(err) }, 'write failed');
      }
      if (MAKE_KINDS.has(w.kind)) makeFailed = true;
    }
  }
  return res;
}

async function applyOne(ctx: ApplyContext, w: Write): Promise<void> {
  const c = ctx.client;
  switch (w.kind) {
    case 'addLabels':
    case 'removeLabels': {
      const patch = w.kind === 'addLabels' ? labelsPatch(w.keys) : labelsPatch([], w.keys);
      const ref = w.target === 'Node' ? NODES : CILIUM_NODES;
      const existed = await mergePatchIfExists(c, ref, w.name, patch);
      // A missing CiliumNode is normal (Cilium not installed, node just joined); a missing Node
      // means it was deleted since the snapshot: the next pass sees that.
      if (!existed) ctx.log.debug({ write: describeWrite(w) }, 'object not found; skipped');
      return;
    }
    case 'createInstance': {
      await c.create(INSTANCES, instanceBody(w.object), { fieldManager: FIELD_MANAGER });
      return;
    }
    case 'updateInstance': {
      const current = ctx.cached.instance(w.object.metadata.name) ?? (await c.tryGet<EgressGatewayInstance>(INSTANCES, w.object.metadata.name));
      if (!current) {
        await c.create(INSTANCES, instanceBody(w.object), { fieldManager: FIELD_MANAGER });
        return;
      }
      const desired = instanceBody(w.object);
      // PUT with the cached resourceVersion: if the object moved on since our snapshot, 409 and a
      // fresh pass, instead of overwriting what we did not see.
      await c.replace(INSTANCES, current.metadata.name, {
        ...current,
        metadata: {
          ...current.metadata,
          labels: desired.metadata.labels,
          annotations: instanceAnnotations(current.metadata.annotations, desired.metadata.annotations),
          ownerReferences: desired.metadata.ownerReferences ?? current.metadata.ownerReferences,
          finalizers: current.metadata.deletionTimestamp ? current.metadata.finalizers : desired.metadata.finalizers,
        },
        spec: desired.spec,
      });
      return;
    }
    case 'deleteInstance': {
      try {
        await c.delete(INSTANCES, w.name, w.uid ? { uid: w.uid } : {});
      } catch (err) {
        if (!isObjectGone(err, w.name)) throw err;
      }
      return;
    }
    case 'releaseFinalizer': {
      await mergePatchIfExists(c, INSTANCES, w.name, CLEAR_FINALIZERS_PATCH);
      return;
    }
    case 'applyCEGP': {
      const o = w.object;
      const body = {
        apiVersion: o.apiVersion ?? 'cilium.io/v2',
        kind: o.kind ?? KIND_CEGP,
        metadata: {
          name: o.metadata.name,
          labels: { ...OWNED_LABELS, ...(o.metadata.labels ?? {}) },
          ...(o.metadata.annotations ? { annotations: o.metadata.annotations } : {}),
          ...(o.metadata.ownerReferences ? { ownerReferences: o.metadata.ownerReferences } : {}),
        },
        spec: o.spec,
      };
      // Server-side apply, forced: we own these objects, and fields we stop sending are removed
      // (e.g. excludedCIDRs emptied, egressIP replaced by interface on a mode change).
      await c.apply(CEGPS, o.metadata.name, body, { fieldManager: FIELD_MANAGER, force: true });
      return;
    }
    case 'deleteCEGP': {
      await c.deleteIfExists(CEGPS, w.name);
      return;
    }
    case 'applyDataplane': {
      // Server-side apply: the object is ours alone; forced, as a new leader takes over its field manager's fields.
      const o = w.object;
      await c.apply(DATAPLANES, o.metadata.name, { apiVersion: INTERNAL_API_VERSION, kind: KIND_DATAPLANE, metadata: o.metadata, spec: o.spec }, { fieldManager: FIELD_MANAGER, force: true });
      return;
    }
    case 'deleteDataplane': {
      await c.deleteIfExists(DATAPLANES, w.name);
      return;
    }
    case 'gatewayStatus': {
      const current = ctx.cached.gateway(w.name)?.status;
      await mergePatchIfExists(c, GATEWAYS, w.name, { status: statusPatch(current, w.status) }, 'status');
      return;
    }
    case 'policyStatus': {
      const current = ctx.cached.policy(w.name)?.status;
      await mergePatchIfExists(c, POLICIES, w.name, { status: statusPatch(current, w.status) }, 'status');
      return;
    }
    case 'clearMoveRequest': {
      await mergePatchIfExists(c, GATEWAYS, w.gateway, annotationsPatch({ [MOVE_TO_ANNOTATION]: null }));
      return;
    }
    case 'event': {
      // Events are best effort: a failure is logged by the recorder and never fails the pass.
      await ctx.recorder.tryRecord(w.regarding, w.type, w.reason, w.note);
      return;
    }
  }
}

/** The instance as we create it: apiVersion/kind filled in, our finalizer always present. */
function instanceBody(o: EgressGatewayInstance): EgressGatewayInstance {
  const finalizers = o.metadata.finalizers ?? [];
  return {
    ...o,
    apiVersion: o.apiVersion ?? INTERNAL_API_VERSION,
    kind: o.kind ?? KIND_INSTANCE,
    metadata: {
      ...stripServerFields(o.metadata),
      finalizers: finalizers.includes(INSTANCE_FINALIZER) ? finalizers : [...finalizers, INSTANCE_FINALIZER],
    },
    status: undefined,
  };
}

function stripServerFields(m: EgressGatewayInstance['metadata']): EgressGatewayInstance['metadata'] {
  const { resourceVersion: _rv, uid: _uid, creationTimestamp: _ct, deletionTimestamp: _dt, generation: _g, ...rest } = m;
  return rest;
}

/**
 * A merge patch that makes the status equal to `desired`: top-level fields the desired status no
 * longer has are set to null (a merge patch otherwise keeps them).
 */
export function statusPatch<S extends object>(current: S | undefined, desired: S): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(desired as Record<string, unknown>) };
  for (const k of Object.keys(current ?? {})) if (!(k in out) || out[k] === undefined) out[k] = null;
  return out;
}
