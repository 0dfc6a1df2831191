import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HANDOVER_TO_ANNOTATION, INSTANCE_FINALIZER, MODE_PRIMARY_IP, MODE_VIP, NODE_NAME_LABEL } from '../api/names.ts';
import type { EgressGatewayInstance } from '../api/types.ts';
import { chooseInterface, desiredVips, instanceStatus, nextHopConflict, normaliseIp, readyCondition } from './vips.ts';

function inst(name: string, node: string, ip: string, extra: { interfaces?: string[]; mode?: string; deleting?: boolean; specNode?: string; generation?: number } = {}): EgressGatewayInstance {
  return {
    metadata: {
      name,
      generation: extra.generation ?? 1,
      labels: { [NODE_NAME_LABEL]: node },
      finalizers: [INSTANCE_FINALIZER],
      ...(extra.deleting ? { deletionTimestamp: '2025-01-01T00:00:00Z' } : {}),
    },
    spec: {
      nodeName: extra.specNode ?? node,
      sourceIP: { mode: extra.mode ?? MODE_VIP, virtualIPAddress: { ip, interfaces: extra.interfaces ?? [] } },
    },
  };
}

test('desired VIPs: only live VIP-mode instances addressed to this node', () => {
  const { vips, problems } = desiredVips([
    inst('a', 'n1', '198.18.0.100'),
    inst('b', 'n2', '198.18.0.101'), // another node (R27)
    inst('c', 'n1', '198.18.0.102', { deleting: true }),
    inst('d', 'n1', '198.18.0.103', { mode: MODE_PRIMARY_IP }),
    inst('e', 'n1', '198.18.0.104', { specNode: 'n2' }), // label and spec disagree: not ours
    inst('f', 'n1', 'not-an-ip'),
    inst('g', 'n1', '2001:DB8:0::1', { interfaces: ['eth1'] }),
  ], 'n1');
  assert.deepEqual(vips, [
    { ip: '198.18.0.100', family: 4, interfaces: [], instances: ['a'] },
    { ip: '2001:db8::1', family: 6, interfaces: ['eth1'], instances: ['g'] },
  ]);
  assert.deepEqual(problems.map((p) => p.instance), ['f']);
});

test('two instances naming one VIP collapse into one entry; the first by name decides', () => {
  const { vips } = desiredVips([inst('z', 'n1', '198.18.0.100', { interfaces: ['eth2'] }), inst('a', 'n1', '198.18.0.100', { interfaces: ['eth1'] })], 'n1');
  assert.deepEqual(vips, [{ ip: '198.18.0.100', family: 4, interfaces: ['eth1'], instances: ['a', 'z'] }]);
});

test('IP normalisation rejects legacy IPv4 forms', () => {
  assert.deepEqual(normaliseIp('198.18.0.1'), { ip: '198.18.0.1', family: 4 });
  assert.equal(normaliseIp('10.1'), undefined);
  assert.equal(normaliseIp(''), undefined);
});

test('interface choice: first configured one that exists, else the route, else an error', () => {
  const existing = new Set(['eth0', 'eth1']);
  assert.deepEqual(chooseInterface({ ip: '198.18.0.1', interfaces: ['bond0', 'eth1', 'eth0'] }, existing, 'eth0'), { ifname: 'eth1' });
  assert.deepEqual(chooseInterface({ ip: '198.18.0.1', interfaces: [] }, existing, 'eth0'), { ifname: 'eth0' });
  assert.match((chooseInterface({ ip: '198.18.0.1', interfaces: ['bond0'] }, existing, 'eth0') as { error: string }).error, /bond0/);
  assert.match((chooseInterface({ ip: '198.18.0.1', interfaces: [] }, existing, undefined) as { error: string }).error, /no interface routes/);
});

test('Ready condition: success counts VIPs; failure keeps status an enum value (fixes D4)', () => {
  assert.deepEqual(readyCondition({ ok: true, announced: 2 }), { type: 'Ready', status: 'True', reason: 'AnnouncingSucceed', message: 'Announcing 2 Virtual IPs' });
  const failed = readyCondition({ ok: false, announced: 0, error: 'interface eth1 is down' });
  assert.equal(failed.status, 'False');
  assert.equal(failed.reason, 'AnnouncingFailed');
  assert.match(failed.message, /interface eth1 is down/);
});

test('instance status: written once, lastTransitionTime kept until the status changes', () => {
  const i = inst('a', 'n1', '198.18.0.100', { generation: 3 });
  const s1 = instanceStatus(i, { ok: true, announced: 1 }, 't1');
  assert.ok(s1);
  assert.equal(s1.observedGeneration, 3);
  assert.deepEqual(s1.conditions?.[0], {
    type: 'Ready', status: 'True', reason: 'AnnouncingSucceed', message: 'Announcing 1 Virtual IPs',
    lastTransitionTime: 't1', lastHeartbeatTime: 't1', observedGeneration: 3,
  });
  const written = { ...i, status: s1 };
  assert.equal(instanceStatus(written, { ok: true, announced: 1 }, 't2'), undefined, 'nothing changed: no write');
  const s2 = instanceStatus(written, { ok: true, announced: 2 }, 't2');
  assert.equal(s2?.conditions?.[0]?.lastTransitionTime, 't1', 'same status, new message: transition time kept');
  const s3 = instanceStatus(written, { ok: false, announced: 0, error: 'x' }, 't3');
  assert.equal(s3?.conditions?.[0]?.lastTransitionTime, 't3');
  const bumped = { ...written, metadata: { ...written.metadata, generation: 4 } };
  assert.equal(instanceStatus(bumped, { ok: true, announced: 1 }, 't4')?.observedGeneration, 4, 'a new generation is acknowledged');
});

test('instance status: other condition types are kept', () => {
  const i = { ...inst('a', 'n1', '198.18.0.100'), status: { conditions: [{ type: 'Other', status: 'True' as const, reason: 'X', message: '', lastTransitionTime: 't0' }] } };
  const s = instanceStatus(i, { ok: true, announced: 1 }, 't1');
  assert.deepEqual(s?.conditions?.map((c) => c.type), ['Other', 'Ready']);
});

// Found by the chaos suite: a gateway whose VIP was the router's address took it over on the LAN.
test('a VIP that is the next hop of one of the node\'s routes (a router\'s address) is refused, with the reason', () => {
  const gateways = new Set(['198.18.0.1', '2001:db8::1']);
  assert.match(nextHopConflict('198.18.0.1', gateways) ?? '', /198\.18\.0\.1 is the next hop of a route on this node/);
  assert.equal(nextHopConflict('198.18.0.100', gateways), undefined);
  assert.equal(nextHopConflict('198.18.0.1', new Set()), undefined);
});

test('handover mark: a VIP every instance of which is marked names the node the mark names (another node, or this one: held)', () => {
  const marked = (name: string, node: string, ip: string, to: string): EgressGatewayInstance => {
    const i = inst(name, node, ip);
    i.metadata.annotations = { [HANDOVER_TO_ANNOTATION]: to };
    return i;
  };
  const { vips } = desiredVips([marked('a', 'n1', '198.18.0.100', 'n2'), inst('b', 'n1', '198.18.0.101'), marked('c', 'n1', '198.18.0.102', 'n1')], 'n1');
  assert.deepEqual(vips, [
    { ip: '198.18.0.100', family: 4, interfaces: [], instances: ['a'], handoverTo: 'n2' },
    { ip: '198.18.0.101', family: 4, interfaces: [], instances: ['b'] },
    // A mark naming this very node holds it back (the controller's held next owner): not taken either.
    { ip: '198.18.0.102', family: 4, interfaces: [], instances: ['c'], handoverTo: 'n1' },
  ]);
  // One instance plainly asking for the VIP is enough to take it, whatever the order.
  for (const list of [[marked('a', 'n1', '198.18.0.100', 'n2'), inst('b', 'n1', '198.18.0.100')], [inst('a', 'n1', '198.18.0.100'), marked('b', 'n1', '198.18.0.100', 'n2')]]) {
    assert.equal(desiredVips(list, 'n1').vips[0]?.handoverTo, undefined);
  }
});

test('Ready condition while handing over: False, reason HandingOver, naming the target', () => {
  assert.deepEqual(readyCondition({ ok: false, announced: 0, handingOverTo: 'n2' }), {
    type: 'Ready',
    status: 'False',
    reason: 'HandingOver',
    message: 'Not taking the Virtual IP: it is being handed over to node n2',
  });
  // Held by the controller (the mark names this node): it is next, and waits.
  assert.equal(readyCondition({ ok: false, announced: 0, handingOverTo: 'n1', node: 'n1' }).message, 'Not taking the Virtual IP yet: this node is next, once the instance of the node tried before is deleted');
  assert.equal(readyCondition({ ok: false, announced: 0, handingOverTo: 'n2', node: 'n1' }).reason, 'HandingOver');
});
