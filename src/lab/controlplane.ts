// `egressgw lab` without root or `ip netns`: the control plane only (src/testenv/controlplane.ts). The
// test API server on loopback, the CRDs, the lab nodes as API objects (Node, CiliumNode, a Ready
// cilium-agent Pod each) and the controller in-process. No network namespaces and no agents, so nothing
// here can hold a VIP: VIP-mode gateways stay not Ready (no live agent), PrimaryIP-mode gateways get an
// active node. f marks the active node NotReady instead of failing it.

import type { EgressGateway } from '../api/types.ts';
import { GATEWAYS } from '../kube/resources.ts';
import { startControlPlane } from '../testenv/controlplane.ts';
import { poll } from '../testenv/poll.ts';
import { applyAll, NODES, retryPortRace, section, START_DEADLINE_MS, statusesWritten, type Ctx } from './context.ts';
import { liveScreen, statusText } from './screen.ts';

/** The nodes, with the addresses the network lab gives them. */
const LAB_NODES = Array.from({ length: NODES }, (_, i) => ({ name: `node${i + 1}`, ip: `198.18.0.${11 + i}` }));
/**
 * No agents and no network here, so the seed examples may select these nodes too: their PrimaryIP
 * gateway then shows a real election on objects alone.
 */
const SEED_SELECTOR = { 'node-role.deckhouse.io/egress': '' };

export async function controlPlaneLab(ctx: Ctx, why: string): Promise<number> {
  const { flags, signal, state } = ctx;
  ctx.say(`${why}`);
  ctx.say(`running the control plane only: test API server, controller and the examples, with ${NODES} lab nodes as API objects ` +
    '(no network namespaces and no agents, so VIP-mode gateways cannot become Ready and there is no failover to measure)');
  const cp = await retryPortRace(ctx, () => startControlPlane({ nodes: LAB_NODES, extraNodeLabels: SEED_SELECTOR, keepLogs: flags.keep }));
  state.cp = cp;
  signal.throwIfAborted();
  const names = cp.nodes.map((n) => n.name);
  ctx.say(`test API server: ${cp.cluster.server} (its files: ${cp.cluster.dir})`);
  ctx.say('controller: running in this process, caches synced (a single replica: the lab runs no leader election)');
  ctx.say(`nodes: ${names.join(', ')} (Node, CiliumNode and a Ready cilium-agent Pod each; no agents)`);
  await applyAll(ctx, cp.client);
  await poll('the controller to write every status', () => statusesWritten(cp.client), START_DEADLINE_MS, { signal });

  if (flags.scenario) ctx.say('no failover scenario: failing a node needs the network and the agents');
  if (flags.once) {
    ctx.out(section('status', await statusText(cp.client, flags.color)));
    return 0;
  }
  const notReady = new Set<string>();
  return liveScreen(ctx, cp.client, {
    header: () => `egressgw lab (control plane only) · test API server ${cp.cluster.server} (its own, never a real cluster)` +
      (notReady.size > 0 ? ` · NotReady: ${[...notReady].join(', ')}` : ''),
    keys: 'f mark the active node NotReady · r mark every node Ready · q quit',
    actions: {
      f: {
        busy: 'marking the active node NotReady…',
        run: async () => {
          const gws = (await cp.client.list<EgressGateway>(GATEWAYS)).items;
          const node = gws.map((g) => g.status?.activeNodeName).find((n) => n && !notReady.has(n));
          if (!node) return 'no gateway has an active node to fail';
          await cp.setNodeReady(node, false);
          notReady.add(node);
          return `marked ${node} NotReady (the control-plane lab has no agents to kill)`;
        },
      },
      r: {
        busy: 'marking every node Ready…',
        run: async () => {
          for (const n of names) await cp.setNodeReady(n, true);
          notReady.clear();
          return `marked ${names.join(', ')} Ready`;
        },
      },
    },
  });
}
