// The CRDs against the real API server: the server must accept the CRDs themselves (structural schema, CEL
// compiles, estimated CEL cost within budget), accept every good object — the documentation's seed examples
// and the lab's included — and reject every bad one with 422 and a message that names the offending field.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ApiException, ApiextensionsV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { startTestCluster, type TestCluster } from '../../src/testenv/apiserver.ts';

const root = join(import.meta.dirname, '..', '..');

type Obj = Record<string, unknown>;
const group = 'network.deckhouse.io';
const version = 'v1alpha1';

function example(path: string): Obj {
  return parse(readFileSync(join(root, path), 'utf8')) as Obj;
}

function gateway(name: string, spec: Obj | undefined): Obj {
  return { apiVersion: `${group}/${version}`, kind: 'EgressGateway', metadata: { name }, ...(spec ? { spec } : {}) };
}
const vip = (ip: string, extra: Obj = {}): Obj => ({ mode: 'VirtualIPAddress', virtualIPAddress: { ip, ...extra } });
const primary = (interfaceName: string): Obj => ({
  mode: 'PrimaryIPFromEgressGatewayNodeInterface', primaryIPFromEgressGatewayNodeInterface: { interfaceName },
});
const egress = { 'node-role.deckhouse.io/egress': '' };

function policy(name: string, spec: Obj): Obj {
  return { apiVersion: `${group}/${version}`, kind: 'EgressGatewayPolicy', metadata: { name }, spec };
}
const pods = [{ podSelector: { matchLabels: { app: 'backend' } } }];
const pol = (extra: Obj): Obj => ({ egressGatewayName: 'gw', destinationCIDRs: ['198.18.0.0/15'], selectors: pods, ...extra });
const withExpr = (expr: Obj): Obj => pol({ selectors: [{ podSelector: { matchExpressions: [expr] } }] });

const goodGateways: [string, Obj][] = [
  ['seed example, PrimaryIP mode', example('deploy/examples/egressgateway-primaryip.yaml')],
  ['seed example, VIP mode', example('deploy/examples/egressgateway-vip.yaml')],
  ['lab gateway', example('deploy/examples/lab/egressgateway.yaml')],
  ['VIP with interfaces', gateway('g-ifaces', { nodeSelector: egress, sourceIP: vip('192.0.2.10', { interfaces: ['eth1', 'bond0.100', 'br-ext'] }) })],
  ['IPv6 VIP (reported by the controller, not rejected)', gateway('g-v6', { sourceIP: vip('2001:db8::10') })],
  ['name of exactly 52 characters', gateway('g'.repeat(52), { sourceIP: primary('eth1') })],
  // The reference ignores the sub-object of the other mode; YAML that carries both must keep applying.
  ['both sub-objects (the other mode\'s is ignored)', gateway('g-both', { sourceIP: { ...vip('192.0.2.10'), primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth1' } } })],
  ['no nodeSelector (every node)', gateway('g-all', { sourceIP: primary('ens192') })],
  ['prefixed selector keys and values', gateway('g-keys', {
    nodeSelector: { 'kubernetes.io/hostname': 'node-1', 'topology.kubernetes.io/zone': 'zone_A.1', plain: 'x' },
    sourceIP: primary('eth1'),
  })],
];

const goodPolicies: [string, Obj][] = [
  ['seed example policy', example('deploy/examples/egressgatewaypolicy.yaml')],
  ['lab policy', example('deploy/examples/lab/egressgatewaypolicy.yaml')],
  ['excludedCIDRs inside destinationCIDRs', policy('p-excl', pol({
    destinationCIDRs: ['0.0.0.0/0', '2001:db8::/32'], excludedCIDRs: ['198.18.0.0/24', '192.0.2.1/32', '2001:db8:1::/48'],
  }))],
  ['IPv6 destination (reported by the controller, not rejected)', policy('p-v6', pol({ destinationCIDRs: ['2001:db8::/32'] }))],
  ['namespaceSelector and matchExpressions', policy('p-sel', pol({
    selectors: [
      { podSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['a', 'b'] }, { key: 'tier', operator: 'Exists' }] },
        namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'prod' } } },
      { podSelector: {} },
    ],
  }))],
  ['gateway name of 52 characters', policy('p-long', pol({ egressGatewayName: 'g'.repeat(52) }))],
];

// [case, object, text the 422 message must contain: the field path]
const badGateways: [string, Obj, string][] = [
  ['VIP not an IP', gateway('b-ip1', { sourceIP: vip('172.18.18.300') }), 'spec.sourceIP.virtualIPAddress.ip'],
  ['VIP garbage', gateway('b-ip2', { sourceIP: vip('not-an-ip') }), 'spec.sourceIP.virtualIPAddress.ip'],
  ['VIP with a prefix length', gateway('b-ip3', { sourceIP: vip('192.0.2.10/32') }), 'spec.sourceIP.virtualIPAddress.ip'],
  ['VIP loopback', gateway('b-ip4', { sourceIP: vip('127.0.0.1') }), 'spec.sourceIP.virtualIPAddress.ip'],
  ['VIP unspecified', gateway('b-ip5', { sourceIP: vip('0.0.0.0') }), 'spec.sourceIP.virtualIPAddress.ip'],
  ['VIP multicast', gateway('b-ip6', { sourceIP: vip('224.0.0.18') }), 'spec.sourceIP.virtualIPAddress.ip'],
  ['VIP IPv6 link-local', gateway('b-ip7', { sourceIP: vip('fe80::1') }), 'spec.sourceIP.virtualIPAddress.ip'],
  ['VIP mode without virtualIPAddress', gateway('b-mode1', { sourceIP: { mode: 'VirtualIPAddress', primaryIPFromEgressGatewayNodeInterface: { interfaceName: 'eth1' } } }), 'spec.sourceIP.virtualIPAddress'],
  ['PrimaryIP mode without its object', gateway('b-mode2', { sourceIP: { mode: 'PrimaryIPFromEgressGatewayNodeInterface', virtualIPAddress: { ip: '192.0.2.10' } } }), 'spec.sourceIP.primaryIPFromEgressGatewayNodeInterface'],
  ['unknown mode', gateway('b-mode4', { sourceIP: { mode: 'Magic', virtualIPAddress: { ip: '192.0.2.10' } } }), 'spec.sourceIP.mode'],
  ['missing sourceIP', gateway('b-nosrc', { nodeSelector: egress }), 'spec.sourceIP'],
  ['missing spec', gateway('b-nospec', undefined), 'spec'],
  ['name of 53 characters', gateway('g'.repeat(53), { sourceIP: primary('eth1') }), 'metadata.name'],
  ['name with upper case', gateway('Gateway1', { sourceIP: primary('eth1') }), 'metadata.name'],
  ['interface name with a slash', gateway('b-if1', { sourceIP: primary('eth/0') }), 'spec.sourceIP.primaryIPFromEgressGatewayNodeInterface.interfaceName'],
  ['interface name of 16 characters', gateway('b-if2', { sourceIP: primary('a'.repeat(16)) }), 'spec.sourceIP.primaryIPFromEgressGatewayNodeInterface.interfaceName'],
  ['interface name ..', gateway('b-if3', { sourceIP: primary('..') }), 'spec.sourceIP.primaryIPFromEgressGatewayNodeInterface.interfaceName'],
  ['interfaces item with a space', gateway('b-if4', { sourceIP: vip('192.0.2.10', { interfaces: ['eth0', 'eth 1'] }) }), 'spec.sourceIP.virtualIPAddress.interfaces[1]'],
  ['interfaces item with a colon', gateway('b-if5', { sourceIP: vip('192.0.2.10', { interfaces: ['eth0:1'] }) }), 'spec.sourceIP.virtualIPAddress.interfaces[0]'],
  ['nodeSelector key with two slashes', gateway('b-ns1', { nodeSelector: { 'a/b/c': '' }, sourceIP: primary('eth1') }), 'spec.nodeSelector'],
  ['nodeSelector key name too long', gateway('b-ns2', { nodeSelector: { ['k'.repeat(64)]: '' }, sourceIP: primary('eth1') }), 'spec.nodeSelector'],
  ['nodeSelector value with a space', gateway('b-ns3', { nodeSelector: { egress: 'a b' }, sourceIP: primary('eth1') }), 'spec.nodeSelector'],
];

const badPolicies: [string, Obj, string][] = [
  ['destination CIDR with /33', policy('b-cidr1', pol({ destinationCIDRs: ['198.18.0.0/33'] })), 'spec.destinationCIDRs[0]'],
  ['destination is an address, not a CIDR', policy('b-cidr2', pol({ destinationCIDRs: ['198.18.0.0/15', '192.0.2.1'] })), 'spec.destinationCIDRs[1]'],
  ['excluded CIDR garbage', policy('b-cidr3', pol({ excludedCIDRs: ['nope'] })), 'spec.excludedCIDRs[0]'],
  ['excluded CIDR outside the destinations', policy('b-excl1', pol({ excludedCIDRs: ['192.0.2.0/24'] })), 'spec.excludedCIDRs'],
  ['excluded CIDR wider than its destination', policy('b-excl2', pol({ excludedCIDRs: ['198.0.0.0/8'] })), 'spec.excludedCIDRs'],
  ['excluded CIDR of the other family', policy('b-excl3', pol({ destinationCIDRs: ['0.0.0.0/0'], excludedCIDRs: ['2001:db8::/32'] })), 'spec.excludedCIDRs'],
  ['empty destinationCIDRs', policy('b-dst1', pol({ destinationCIDRs: [] })), 'spec.destinationCIDRs'],
  ['missing destinationCIDRs', policy('b-dst2', { egressGatewayName: 'gw', selectors: pods }), 'spec.destinationCIDRs'],
  ['empty selectors', policy('b-sel1', pol({ selectors: [] })), 'spec.selectors'],
  ['missing selectors', policy('b-sel2', { egressGatewayName: 'gw', destinationCIDRs: ['0.0.0.0/0'] }), 'spec.selectors'],
  ['selector without podSelector', policy('b-sel3', pol({ selectors: [{ namespaceSelector: {} }] })), 'spec.selectors[0].podSelector'],
  ['bad operator', policy('b-op1', withExpr({ key: 'app', operator: 'Equals', values: ['a'] })), 'spec.selectors[0].podSelector.matchExpressions[0].operator'],
  ['In without values', policy('b-op2', withExpr({ key: 'app', operator: 'In' })), 'spec.selectors[0].podSelector.matchExpressions[0].values'],
  ['Exists with values', policy('b-op3', withExpr({ key: 'app', operator: 'Exists', values: ['a'] })), 'spec.selectors[0].podSelector.matchExpressions[0].values'],
  ['matchLabels value too long', policy('b-lbl', pol({ selectors: [{ podSelector: { matchLabels: { app: 'v'.repeat(64) } } }] })), 'spec.selectors[0].podSelector.matchLabels'],
  ['missing egressGatewayName', policy('b-gw1', { destinationCIDRs: ['0.0.0.0/0'], selectors: pods }), 'spec.egressGatewayName'],
  ['egressGatewayName of 53 characters', policy('b-gw2', pol({ egressGatewayName: 'g'.repeat(53) })), 'spec.egressGatewayName'],
  ['egressGatewayName with upper case', policy('b-gw3', pol({ egressGatewayName: 'MyGateway' })), 'spec.egressGatewayName'],
];

function plural(o: Obj): string {
  return o.kind === 'EgressGateway' ? 'egressgateways' : 'egressgatewaypolicies';
}

/** The status text of a failed request (client-node keeps the raw body). */
function statusMessage(e: ApiException<unknown>): string {
  const body: unknown = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
  return (body as { message?: string }).message ?? String(e.body);
}

describe('CRD validation on the real API server', () => {
  let cluster: TestCluster;
  let api: CustomObjectsApi;

  before(async () => {
    cluster = await startTestCluster();
    await cluster.applyCRDs(join(root, 'deploy', 'crds'));
    await cluster.applyCRDs(join(root, 'test', 'fixtures', 'crds', 'cilium'));
    api = cluster.kubeConfig.makeApiClient(CustomObjectsApi);
  });
  after(async () => {
    await cluster?.stop();
  });

  // Guards against a client that re-serialises the CRD through typed models and silently drops the
  // extension keys (enum, default, x-kubernetes-*): then every rule below would "pass" unenforced.
  test('the stored CRDs kept their CEL rules, enums, defaults and list types', async () => {
    const ext = cluster.kubeConfig.makeApiClient(ApiextensionsV1Api);
    const eg = await ext.readCustomResourceDefinition({ name: 'egressgateways.network.deckhouse.io' });
    const top = eg.spec.versions[0]?.schema?.openAPIV3Schema;
    const sip = top?.properties?.spec?.properties?.sourceIP;
    const hint = 'applyCRDs lost schema keys on the way to the server (a typed client serialiser renames enum/default/x-kubernetes-*)';
    assert.equal(top?.x_kubernetes_validations?.length, 1, hint);
    assert.equal(sip?.x_kubernetes_validations?.length, 2, hint);
    assert.deepEqual(sip?.properties?.mode?._enum, ['VirtualIPAddress', 'PrimaryIPFromEgressGatewayNodeInterface'], hint);
    assert.deepEqual(sip?.properties?.virtualIPAddress?.properties?.interfaces?._default, [], hint);
    assert.equal(top?.properties?.status?.properties?.conditions?.x_kubernetes_list_type, 'map', hint);
    const cn = await ext.readCustomResourceDefinition({ name: 'ciliumnodes.cilium.io' });
    assert.equal(cn.spec.versions[0]?.schema?.openAPIV3Schema?.properties?.spec?.x_kubernetes_preserve_unknown_fields, true, hint);
  });

  for (const [name, obj] of [...goodGateways, ...goodPolicies]) {
    test(`accepts: ${name}`, async () => {
      const created = await api.createClusterCustomObject({ group, version, plural: plural(obj), body: obj }) as Obj;
      assert.equal((created.metadata as Obj).name, (obj.metadata as Obj).name);
      assert.ok((created.metadata as Obj).uid, 'stored, not only validated');
    });
  }

  for (const [name, obj, field] of [...badGateways, ...badPolicies]) {
    test(`rejects: ${name} (${field})`, async () => {
      await assert.rejects(
        api.createClusterCustomObject({ group, version, plural: plural(obj), body: obj }),
        (e: unknown) => {
          assert.ok(e instanceof ApiException, `expected an API error, got ${String(e)}`);
          const message = statusMessage(e);
          assert.equal(e.code, 422, message);
          assert.ok(message.includes(field), `message does not name ${field}: ${message}`);
          return true;
        },
      );
    });
  }

  test('Cilium fixtures: a CEGP as rendered for a VIP gateway is accepted; IPv6 or both egressIP forms are not', async () => {
    const cegp = (name: string, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumEgressGatewayPolicy', metadata: { name }, spec });
    const gw = { nodeSelector: { matchLabels: { 'egress-gateway.network.deckhouse.io/active-for-myeg': '' } }, egressIP: '172.18.18.242' };
    const sel = [{ podSelector: { matchLabels: { app: 'backend', 'io.kubernetes.pod.namespace': 'my-ns' } } }];
    const create = (body: Obj) => api.createClusterCustomObject({ group: 'cilium.io', version: 'v2', plural: 'ciliumegressgatewaypolicies', body });
    await create(cegp('d8.ok', { selectors: sel, destinationCIDRs: ['0.0.0.0/0'], excludedCIDRs: ['192.0.2.0/24'], egressGateway: gw }));
    await create(cegp('d8.primary', { selectors: sel, destinationCIDRs: ['0.0.0.0/0'], egressGateway: { nodeSelector: gw.nodeSelector, interface: 'eth1' } }));
    for (const [name, spec, field] of [
      ['d8.v6cidr', { selectors: sel, destinationCIDRs: ['2001:db8::/32'], egressGateway: gw }, 'spec.destinationCIDRs[0]'],
      ['d8.v6ip', { selectors: sel, destinationCIDRs: ['0.0.0.0/0'], egressGateway: { ...gw, egressIP: '2001:db8::1' } }, 'spec.egressGateway.egressIP'],
      ['d8.noselectors', { destinationCIDRs: ['0.0.0.0/0'], egressGateway: gw }, 'spec.selectors'],
    ] as const) {
      await assert.rejects(create(cegp(name, spec)), (e: unknown) => {
        assert.ok(e instanceof ApiException);
        assert.equal(e.code, 422);
        assert.ok(statusMessage(e).includes(field), statusMessage(e));
        return true;
      });
    }
    const node = await api.createClusterCustomObject({
      group: 'cilium.io', version: 'v2', plural: 'ciliumnodes',
      body: { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name: 'node-1' }, spec: { addresses: [{ type: 'InternalIP', ip: '192.0.2.1' }] } },
    }) as Obj;
    assert.deepEqual(node.spec, { addresses: [{ type: 'InternalIP', ip: '192.0.2.1' }] }, 'CiliumNode spec is kept as written');
  });

  test('the seed VIP gateway keeps its fields (nothing pruned) and defaults interfaces to []', async () => {
    const got = await api.getClusterCustomObject({ group, version, plural: 'egressgateways', name: 'myeg' }) as Obj;
    assert.deepEqual(got.spec, {
      nodeSelector: egress,
      sourceIP: { mode: 'VirtualIPAddress', virtualIPAddress: { ip: '172.18.18.242', interfaces: [] } },
    });
  });
});
