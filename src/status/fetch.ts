// What `egressgw status` and the lab's screen show, read from a live cluster: the objects the status
// model needs, listed in one go. The model itself (pure) is in model.ts.

import type { EgressGateway, EgressGatewayPolicy, PodLike } from '../api/types.ts';
import { isStatus, type KubeClient } from '../kube/client.ts';
import { GATEWAYS, POLICIES, namespaces } from '../kube/resources.ts';
import { UsageError } from '../term/errors.ts';
import { buildStatusModel, type NamespaceLike, type StatusModel } from './model.ts';

/** Lists what the status needs; a missing CRD is the user's setup to fix, said in one line. */
export async function fetchStatusModel(client: KubeClient): Promise<StatusModel> {
  const listOrExplain = async <T>(what: string, fn: () => Promise<{ items: T[] }>): Promise<T[]> => {
    try {
      return (await fn()).items;
    } catch (err) {
      if (isStatus(err, 404)) throw new UsageError(`the ${what} API is not installed in this cluster (apply the CRDs: egressgw manifests)`, 1);
      throw err;
    }
  };
  const [gateways, policies, pods, nss] = await Promise.all([
    listOrExplain('EgressGateway', () => client.list<EgressGateway>(GATEWAYS)),
    listOrExplain('EgressGatewayPolicy', () => client.list<EgressGatewayPolicy>(POLICIES)),
    client.list<PodLike>({ group: '', version: 'v1', plural: 'pods' }),
    client.list<NamespaceLike>(namespaces),
  ]);
  return buildStatusModel({ gateways, policies, pods: pods.items, namespaces: nss.items });
}
