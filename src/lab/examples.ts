// The objects `egressgw lab` applies: the seed examples (deploy/examples/*.yaml, verbatim, as a user
// would apply them — their policy names a gateway that does not exist, which the status must show) and
// the working lab set (deploy/examples/lab/*.yaml, a VIP gateway in the lab's TEST-NET LAN).

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { KIND_GATEWAY, KIND_POLICY, MODE_VIP } from '../api/names.ts';
import type { EgressGateway, EgressGatewayPolicy } from '../api/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { REPO } from '../testenv/paths.ts';
import { applyObjects } from '../testenv/seed.ts';

export const SEED_DIR = join(REPO, 'deploy', 'examples');
export const LAB_SET_DIR = join(SEED_DIR, 'lab');

type Example = EgressGateway | EgressGatewayPolicy;

export interface ExampleSet {
  dir: string;
  objects: Example[];
}

/** Every document of the directory's YAML files (not recursive), in file-name order. */
export function readExamples(dir: string): ExampleSet {
  const objects: Example[] = [];
  for (const f of readdirSync(dir).filter((n) => /\.ya?ml$/.test(n)).sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, f), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${join(dir, f)}: ${doc.errors[0]!.message}`);
      const obj = doc.toJS() as Example | null;
      if (obj && typeof obj === 'object' && (obj.kind === KIND_GATEWAY || obj.kind === KIND_POLICY)) objects.push(obj);
    }
  }
  return { dir, objects };
}

/** `kubectl apply` of the set: create, or server-side apply over an existing object. */
export async function applyExamples(client: KubeClient, set: ExampleSet): Promise<void> {
  await applyObjects(client, set.objects, set.dir);
}

/** One line per object, for the progress output; policies naming a missing gateway say so up front. */
export function describeExamples(sets: ExampleSet[]): string[] {
  const all = sets.flatMap((s) => s.objects);
  const gateways = new Set(all.filter((o) => o.kind === KIND_GATEWAY).map((o) => o.metadata.name));
  return all.map((o) => {
    if (o.kind === KIND_GATEWAY) {
      const src = (o as EgressGateway).spec?.sourceIP;
      const what = src?.mode === MODE_VIP ? `VIP ${src.virtualIPAddress?.ip ?? '?'}` : `interface ${src?.primaryIPFromEgressGatewayNodeInterface?.interfaceName ?? '?'}`;
      return `EgressGateway ${o.metadata.name} (${what})`;
    }
    const gw = (o as EgressGatewayPolicy).spec?.egressGatewayName ?? '';
    return `EgressGatewayPolicy ${o.metadata.name} → gateway ${gw}${gateways.has(gw) ? '' : ' (no such gateway: expect GatewayNotFound)'}`;
  });
}

/** The lab set's VIP-mode gateway: the one the failover scenario fails over. */
export function labVipGateway(set: ExampleSet): { name: string; vip: string } {
  for (const o of set.objects) {
    const src = (o as EgressGateway).spec?.sourceIP;
    if (o.kind === KIND_GATEWAY && src?.mode === MODE_VIP && src.virtualIPAddress?.ip) return { name: o.metadata.name, vip: src.virtualIPAddress.ip };
  }
  throw new Error(`${set.dir} has no VirtualIPAddress-mode EgressGateway for the failover scenario`);
}
