// The controller's side of `--dataplane linux` (docs/dataplane.md): after the core's pass, the
// per-gateway dataplane objects (src/core/dataplane.ts, derived from the gateway decisions and the
// rendered CEGPs) are written instead of the CEGPs, which a cluster without Cilium's egress gateway has
// no use for (and whose CRD it may not have).
//
// The objects are written after the core's writes of the pass: a failover's label move comes first, then
// the one write every source node's agent follows.

import type { EgressGatewayDataplane } from '../api/types.ts';
import { INTERNAL_API_VERSION, KIND_DATAPLANE } from '../api/names.ts';
import { planDataplaneWrites, renderDataplanes, type DataplaneWrite } from '../core/dataplane.ts';
import type { Desired, Snapshot, Write } from '../core/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { isStatus } from '../kube/client.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { DATAPLANES } from '../kube/resources.ts';
import { FIELD_MANAGER } from './apply.ts';

/** The core's writes without the CEGPs (the Linux data plane does not use them). */
export function withoutCEGPs(writes: readonly Write[]): Write[] {
  return writes.filter((w) => w.kind !== 'applyCEGP' && w.kind !== 'deleteCEGP');
}

/** The dataplane writes of a pass: applies (in name order), then deletions of objects no gateway wants. */
export function dataplaneWrites(snapshot: Snapshot, desired: Desired, observed: readonly EgressGatewayDataplane[]): DataplaneWrite[] {
  const want = renderDataplanes({ gateways: snapshot.gateways, nodes: snapshot.nodes, observed, decisions: desired.gateways, cegps: desired.cegps });
  const { applies, deletes } = planDataplaneWrites(want, observed);
  return [...applies, ...deletes];
}

export interface DataplaneApplyResult {
  failed: number;
  conflicts: number;
}

export async function applyDataplaneWrites(client: KubeClient, writes: readonly DataplaneWrite[], log: Logger, mayWrite: () => boolean): Promise<DataplaneApplyResult> {
  const r: DataplaneApplyResult = { failed: 0, conflicts: 0 };
  for (const w of writes) {
    if (!mayWrite()) break;
    try {
      if (w.kind === 'applyDataplane') {
        const o = w.object;
        await client.apply(DATAPLANES, o.metadata.name, { apiVersion: INTERNAL_API_VERSION, kind: KIND_DATAPLANE, metadata: o.metadata, spec: o.spec }, { fieldManager: FIELD_MANAGER, force: true });
      } else {
        await client.deleteIfExists(DATAPLANES, w.name);
      }
    } catch (err) {
      if (isStatus(err, 409)) r.conflicts++;
      else r.failed++;
      log.error({ ...errFields(err), write: `${w.kind} ${w.kind === 'applyDataplane' ? w.object.metadata.name : w.name}` }, 'dataplane write failed');
    }
  }
  return r;
}
