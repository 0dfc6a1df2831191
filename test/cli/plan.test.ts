// `egressgw plan` on manifest fixtures, through the real binary: eligibility with reasons, the election,
// and the writes the controller would make.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import type { PlanReport } from '../../src/cli/plan-report.ts';
import { egressgw } from './helpers.ts';

const CLUSTER = 'test/cli/fixtures/plan/cluster';
const NOW = ['--now', '2026-01-01T12:00:00Z'];

async function plan(args: string[]): Promise<{ report: PlanReport; stderr: string }> {
  const r = await egressgw(['plan', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return { report: (args.includes('json') ? JSON.parse(r.stdout) : parse(r.stdout)) as PlanReport, stderr: r.stderr };
}
const gw = (report: PlanReport, name: string) => {
  const g = report.gateways.find((x) => x.name === name);
  assert.ok(g, `gateway ${name} in the plan`);
  return g;
};
const node = (g: ReturnType<typeof gw>, name: string) => g.nodes.find((n) => n.node === name);

describe('plan on a cluster dump', () => {
  test('eligibility per gateway, with every reason a node is out', async () => {
    const { report, stderr } = await plan(['-f', CLUSTER, ...NOW]);
    assert.match(stderr, /ignored kinds: Deployment/);
    const vip = gw(report, 'egress-vip');
    assert.deepEqual(vip.nodes.map((n) => n.node), ['n1', 'n2', 'n3'], 'n4 does not match the nodeSelector');
    assert.deepEqual(node(vip, 'n1'), { node: 'n1', eligible: true });
    assert.deepEqual(node(vip, 'n2')?.reasons, ['NodeNotReady', 'AgentMissing']);
    assert.deepEqual(node(vip, 'n3')?.reasons, ['Cordoned', 'AgentMissing']);
    assert.equal(vip.readyNodes, '1/3');
    // PrimaryIP mode needs no egressgw agent (reference R4).
    const primary = gw(report, 'egress-primary');
    assert.deepEqual(node(primary, 'n2')?.reasons, ['NodeNotReady']);
    assert.deepEqual(node(primary, 'n3')?.reasons, ['Cordoned']);
  });

  test('the election and the make-before-break order of writes', async () => {
    const { report } = await plan(['-f', CLUSTER, ...NOW]);
    const vip = gw(report, 'egress-vip');
    // VIP mode: the instance comes first; the label waits for the agent's confirmation.
    assert.deepEqual(vip.election, { observedActive: '', elected: 'n1', active: '' });
    assert.equal(vip.phase, 'HandingOver');
    const primary = gw(report, 'egress-primary');
    assert.deepEqual(primary.election, { observedActive: '', elected: 'n1', active: 'n1' });
    assert.equal(primary.ready, true);

    const kinds = report.writes.map((w) => w.kind);
    assert.ok(kinds.indexOf('createInstance') < kinds.indexOf('addLabels'));
    const inst = report.writes.find((w) => w.kind === 'createInstance');
    assert.equal(inst?.kind === 'createInstance' && inst.object.spec?.nodeName, 'n1');
    const labels = report.writes.find((w) => w.kind === 'addLabels' && w.target === 'Node');
    assert.deepEqual(labels?.kind === 'addLabels' && labels.keys, [
      'egress-gateway.network.deckhouse.io/active-for-egress-primary',
      'egress-gateway.network.deckhouse.io/member',
    ]);
    const cegp = report.desired.ciliumEgressGatewayPolicies as Array<{ metadata: { name: string }; spec: { egressGateway: unknown } }>;
    assert.deepEqual(cegp.map((c) => c.metadata.name), ['d8.shop-out'], 'no CEGP for the orphan policy');
    assert.deepEqual(cegp[0]?.spec.egressGateway, {
      nodeSelector: { matchLabels: { 'egress-gateway.network.deckhouse.io/active-for-egress-vip': '' } },
      egressIP: '192.0.2.10',
    });
    const orphan = report.writes.find((w) => w.kind === 'event' && w.reason === 'GatewayNotFound');
    assert.ok(orphan, 'the orphan policy gets an event');
  });

  test('--no-heartbeats: without heartbeats no node can hold a VIP', async () => {
    const { report } = await plan(['-f', CLUSTER, ...NOW, '--no-heartbeats']);
    const vip = gw(report, 'egress-vip');
    assert.equal(vip.phase, 'NoEligibleNode');
    assert.deepEqual(node(vip, 'n1')?.reasons, ['AgentMissing']);
    assert.equal(gw(report, 'egress-primary').election.active, 'n1', 'PrimaryIP mode does not need the agent');
  });

  test('--assume-agents: gateways and nodes alone are enough to plan', async () => {
    const { report } = await plan(['-f', `${CLUSTER}/gateways.yaml`, '-f', `${CLUSTER}/nodes.yaml`, ...NOW, '--assume-agents', '-o', 'json']);
    const vip = gw(report, 'egress-vip');
    assert.deepEqual(node(vip, 'n1'), { node: 'n1', eligible: true });
    // Assumed agents do not hide what the manifests say about the node itself.
    assert.deepEqual(node(vip, 'n2')?.reasons, ['NodeNotReady']);
    assert.deepEqual(node(vip, 'n3')?.reasons, ['Cordoned']);
  });

  test('a stable active node is kept and nothing is written (sticky, no failback)', async () => {
    const { report } = await plan(['-f', 'test/cli/fixtures/plan/steady', ...NOW]);
    const g = gw(report, 'egress-primary');
    assert.deepEqual(g.election, { observedActive: 'n2', elected: 'n2', active: 'n2' });
    assert.deepEqual(report.writes, []);
  });

  test('without the active node, it fails over and says why the old one is out', async () => {
    const { report } = await plan(['-f', 'test/cli/fixtures/plan/failover', ...NOW]);
    const g = gw(report, 'egress-primary');
    assert.deepEqual(g.election, { observedActive: 'n2', elected: 'n1', active: 'n1' });
    assert.deepEqual(node(g, 'n2')?.reasons, ['NodeNotReady']);
    const removed = report.writes.find((w) => w.kind === 'removeLabels' && w.target === 'Node');
    assert.deepEqual(removed?.kind === 'removeLabels' && [removed.name, removed.keys], [
      'n2',
      // A NotReady node also stops being a member (the agent DaemonSet leaves it).
      ['egress-gateway.network.deckhouse.io/active-for-egress-primary', 'egress-gateway.network.deckhouse.io/member'],
    ]);
    const kinds = report.writes.map((w) => w.kind);
    assert.ok(kinds.indexOf('addLabels') < kinds.indexOf('removeLabels'), 'add the new label before removing the old one');
  });
});
