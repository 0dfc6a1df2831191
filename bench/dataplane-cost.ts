// Data-plane cost of the Linux data plane on one node (`npm run bench -- --only dataplane`): 10,000 pods
// of the node selected by 1,000 policies of 100 gateways, applied by the agent's LinuxDataplane into a
// network namespace. Measures the pure part (model + render), the nft transaction of the first apply and
// of updates (one pod added each time), and the size of the ruleset. No traffic is sent.

import { MODE_VIP } from '../src/api/names.ts';
import type { DataplanePolicy, EgressGatewayDataplane } from '../src/api/types.ts';
import { buildNodeDataplane, type DataplanePod } from '../src/dataplane/model.ts';
import { DEFAULT_DATAPLANE_SETTINGS, renderNft } from '../src/dataplane/render.ts';
import { formatIPv4, parseIPv4 } from '../src/dataplane/ranges.ts';
import { createRunner } from '../src/agent/net/exec.ts';
import { LinuxDataplane } from '../src/agent/dataplane/linux.ts';
import { Network } from '../src/testenv/netns.ts';
import { dist, type Dist } from './stats.ts';

export interface DataplaneCostResults {
  pods: number;
  policies: number;
  gateways: number;
  classes: number;
  /** model + render, ms (pure, in the agent's process). */
  computeMs: Dist;
  firstApplyMs: number;
  /** One pod added per update, the whole table replaced. */
  updateMs: Dist;
  /** The nft transaction alone, per update. */
  updateNftMs: Dist;
  scriptBytes: number;
  listedBytes: number;
  setElements: number;
}

const POD_BASE = parseIPv4('198.18.128.0')!;

export async function runDataplaneCostBench(o: { pods?: number; policies?: number; gateways?: number; updates?: number; log?: (l: string) => void } = {}): Promise<DataplaneCostResults> {
  const podCount = o.pods ?? 10_000;
  const policyCount = o.policies ?? 1000;
  const gatewayCount = o.gateways ?? 100;
  const updates = o.updates ?? 20;
  const log = o.log ?? (() => undefined);
  const gateways: EgressGatewayDataplane[] = [];
  for (let g = 0; g < gatewayCount; g++) {
    const policies: DataplanePolicy[] = [];
    for (let k = g; k < policyCount; k += gatewayCount) {
      const a = (k % 200) + 1;
      policies.push({
        name: `p${k}`,
        selectors: [{ podSelector: { matchLabels: { app: `a${k}` } } }],
        destinationCIDRs: [`${a}.0.0.0/8`, '203.0.113.0/24'],
        excludedCIDRs: [`${a}.1.0.0/16`],
      });
    }
    gateways.push({
      metadata: { name: `gw${g}` },
      spec: { tunnelID: g + 1, activeNodeName: 'gw-node', tunnelEndpoint: `198.18.0.${(g % 200) + 20}`, sourceIP: { mode: MODE_VIP, ip: `198.18.1.${g % 250}` }, policies },
    });
  }
  const pod = (i: number): DataplanePod => ({
    metadata: { namespace: 'bench', name: `pod${i}`, labels: { app: `a${i % policyCount}` } },
    spec: { nodeName: 'n1' },
    status: { phase: 'Running', podIP: formatIPv4(POD_BASE + i) },
  });
  const pods = Array.from({ length: podCount }, (_, i) => pod(i));
  const input = (list: DataplanePod[], previous?: ReturnType<typeof buildNodeDataplane>['slots']) => ({
    node: 'n1',
    podCIDRs: ['198.18.128.0/17'],
    serviceCIDRs: ['198.18.48.0/24'],
    gateways,
    pods: list,
    namespaces: new Map(),
    interfaces: new Map(),
    previous,
  });

  const lab = await Network.create({ nodes: 1, prefix: 'egb' });
  try {
    const plane = new LinuxDataplane(DEFAULT_DATAPLANE_SETTINGS, createRunner({ netns: lab.nodes[0]!.ns }), { mtu: 1450 });
    const computeMs: number[] = [];
    let t = performance.now();
    let dp = buildNodeDataplane(input(pods));
    const script = renderNft(dp, DEFAULT_DATAPLANE_SETTINGS);
    computeMs.push(performance.now() - t);
    t = performance.now();
    await plane.apply(dp);
    const firstApplyMs = performance.now() - t;
    log(`dataplane cost: ${podCount} pods, ${dp.classes.length} classes, first apply ${firstApplyMs.toFixed(0)} ms`);
    const updateMs: number[] = [];
    const updateNftMs: number[] = [];
    for (let u = 0; u < updates; u++) {
      pods.push(pod(podCount + u));
      t = performance.now();
      dp = buildNodeDataplane(input(pods, dp.slots));
      renderNft(dp, DEFAULT_DATAPLANE_SETTINGS);
      computeMs.push(performance.now() - t);
      t = performance.now();
      const r = await plane.apply(dp);
      updateMs.push(performance.now() - t);
      updateNftMs.push(r.nftMs);
    }
    const listed = await lab.exec(lab.nodes[0]!.ns, 'nft', ['list', 'table', 'inet', 'egressgw']);
    const st = await plane.state();
    let elements = 0;
    for (const x of st.table?.nftables ?? []) {
      const s = (x.set ?? x.map) as { elem?: unknown[] } | undefined;
      elements += s?.elem?.length ?? 0;
    }
    return {
      pods: podCount,
      policies: policyCount,
      gateways: gatewayCount,
      classes: dp.classes.length,
      computeMs: dist(computeMs),
      firstApplyMs,
      updateMs: dist(updateMs),
      updateNftMs: dist(updateNftMs),
      scriptBytes: Buffer.byteLength(script),
      listedBytes: Buffer.byteLength(listed),
      setElements: elements,
    };
  } finally {
    await lab.teardown();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await runDataplaneCostBench({ log: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
}
