// Patch bodies we send more than once. Merge patches (RFC 7386) for labels, annotations and
// finalizers: a `null` value deletes the key, and they need no read-modify-write.

import type { KubeClient, ResourceRef } from './client.ts';
import { isObjectGone } from './client.ts';

/** `{"metadata":{"labels":{k:""…, k2:null…}}}`: add keys with value "" and remove others. */
export function labelsPatch(add: readonly string[], remove: readonly string[] = [], value = ''): { metadata: { labels: Record<string, string | null> } } {
  const labels: Record<string, string | null> = {};
  for (const k of add) labels[k] = value;
  for (const k of remove) labels[k] = null;
  return { metadata: { labels } };
}

/** Set (string) or remove (null) annotations. */
export function annotationsPatch(annotations: Record<string, string | null>): { metadata: { annotations: Record<string, string | null> } } {
  return { metadata: { annotations } };
}

/** Drop every finalizer: what the controller does for an instance whose node can no longer do it. */
export const CLEAR_FINALIZERS_PATCH = Object.freeze({ metadata: { finalizers: null } });

/**
 * Merge patch that treats "no such object" as nothing to do; returns whether the object existed. A 404
 * for a resource type not served right now throws (nothing was done; the caller retries).
 */
export async function mergePatchIfExists(client: KubeClient, ref: ResourceRef, name: string, patch: unknown, subresource?: string): Promise<boolean> {
  try {
    await client.mergePatch(ref, name, patch, subresource);
    return true;
  } catch (err) {
    if (isObjectGone(err, name)) return false;
    throw err;
  }
}
