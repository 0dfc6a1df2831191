// Pure checks of the CRD files: structure, printer columns, required fields and the presence of each CEL rule
// where it belongs. Whether the API server accepts the CRDs and enforces the rules is validation.test.ts's job;
// this file fails fast (no server) when someone edits a CRD and drops a rule or a column.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { MAX_PUBLISHED_REMAPS } from '../../src/dataplane/remaps.ts';

const root = join(import.meta.dirname, '..', '..');
const crdDir = join(root, 'deploy', 'crds');
const ciliumDir = join(root, 'test', 'fixtures', 'crds', 'cilium');

type Schema = {
  type?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema;
  enum?: unknown[];
  pattern?: string;
  format?: string;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  description?: string;
  'x-kubernetes-validations'?: { rule: string; message?: string; fieldPath?: string; reason?: string }[];
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-map-type'?: string;
};
type Version = {
  name: string;
  served: boolean;
  storage: boolean;
  subresources?: { status?: object };
  additionalPrinterColumns?: { name: string; type: string; jsonPath: string; priority?: number }[];
  schema: { openAPIV3Schema: Schema };
};
type CRD = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; listKind?: string; plural: string; singular?: string; shortNames?: string[] };
    versions: Version[];
  };
};

function load(dir: string, file: string): CRD {
  return parse(readFileSync(join(dir, file), 'utf8')) as CRD;
}

function only(crd: CRD): Version {
  assert.equal(crd.spec.versions.length, 1);
  const v = crd.spec.versions[0];
  assert.ok(v);
  return v;
}

/** Walks a dotted path; `[]` steps into array items, `{}` into additionalProperties. */
function at(schema: Schema, path: string): Schema {
  let s = schema;
  for (const part of path.split('.')) {
    const next = part === '[]' ? s.items : part === '{}' ? s.additionalProperties : s.properties?.[part];
    assert.ok(next, `schema has no ${path} (stopped at ${part})`);
    s = next;
  }
  return s;
}

function rules(s: Schema): string[] {
  return (s['x-kubernetes-validations'] ?? []).map((v) => v.rule);
}

function columns(v: Version): Map<string, string> {
  return new Map((v.additionalPrinterColumns ?? []).map((c) => [c.name, c.jsonPath]));
}

const EG = 'network.deckhouse.io_egressgateways.yaml';
const EGP = 'network.deckhouse.io_egressgatewaypolicies.yaml';
const EGI = 'internal.network.deckhouse.io_sdninternalegressgatewayinstances.yaml';
const EGD = 'internal.network.deckhouse.io_sdninternalegressgatewaydataplanes.yaml';

test('deploy/crds holds exactly our four CRDs, one per file', () => {
  assert.deepEqual(readdirSync(crdDir).filter((f) => f.endsWith('.yaml')).sort(), [EGD, EGI, EGP, EG].sort());
  const d = load(crdDir, EGD);
  assert.equal(d.metadata.name, `${d.spec.names.plural}.${d.spec.group}`);
  assert.equal(d.spec.scope, 'Cluster');
  // Status: the active node's SNAT remaps (src/dataplane/remaps.ts), a bounded list the schema enforces too.
  assert.deepEqual(only(d).subresources, { status: {} });
  assert.equal(at(only(d).schema.openAPIV3Schema, 'status.snatRemaps.connections').maxItems, MAX_PUBLISHED_REMAPS);
  assert.deepEqual(at(only(d).schema.openAPIV3Schema, 'status.snatRemaps.connections.[]').required, ['podIP', 'podPort', 'serverIP', 'serverPort', 'natPort']);
  for (const f of [EG, EGP, EGI]) {
    const docs = parseAllDocuments(readFileSync(join(crdDir, f), 'utf8'));
    assert.equal(docs.length, 1, f);
    const crd = load(crdDir, f);
    assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
    assert.equal(crd.kind, 'CustomResourceDefinition');
    assert.equal(crd.metadata.name, `${crd.spec.names.plural}.${crd.spec.group}`);
    assert.equal(f, `${crd.spec.group}_${crd.spec.names.plural}.yaml`);
    assert.equal(crd.spec.scope, 'Cluster');
    const v = only(crd);
    assert.deepEqual([v.name, v.served, v.storage], ['v1alpha1', true, true]);
    assert.deepEqual(v.subresources?.status, {});
    assert.equal(columns(v).get('Age'), '.metadata.creationTimestamp');
    assert.equal(columns(v).get('Ready'), '.status.conditions[?(@.type=="Ready")].status');
    // Condition schema of reference-behaviour §2.4, on every status.
    const cond = at(v.schema.openAPIV3Schema, 'status.conditions.[]');
    assert.deepEqual(cond.required, ['type', 'status', 'reason', 'message', 'lastTransitionTime']);
    assert.deepEqual(at(cond, 'status').enum, ['True', 'False', 'Unknown']);
    assert.equal(at(cond, 'lastHeartbeatTime').format, 'date-time');
    assert.equal(at(cond, 'lastTransitionTime').format, 'date-time');
    assert.equal(at(cond, 'observedGeneration').type, 'integer');
    assert.equal(at(cond, 'reason').pattern, '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$');
  }
});

test('EgressGateway: names, columns, the reference fields and the stricter rules', () => {
  const crd = load(crdDir, EG);
  assert.equal(crd.spec.group, 'network.deckhouse.io');
  assert.deepEqual(crd.spec.names, {
    kind: 'EgressGateway', listKind: 'EgressGatewayList', plural: 'egressgateways', singular: 'egressgateway',
  });
  assert.equal(crd.metadata.labels?.heritage, 'deckhouse');
  assert.equal(crd.metadata.labels?.module, 'cni-cilium');
  const v = only(crd);
  const cols = columns(v);
  assert.equal(cols.get('Mode'), '.spec.sourceIP.mode');
  assert.equal(cols.get('Active node'), '.status.activeNodeName');
  assert.equal(cols.get('VIP'), '.spec.sourceIP.virtualIPAddress.ip');
  assert.equal(cols.get('Interface'), '.spec.sourceIP.primaryIPFromEgressGatewayNodeInterface.interfaceName');

  const top = v.schema.openAPIV3Schema;
  assert.ok(rules(top).includes('size(self.metadata.name) <= 52'));
  assert.deepEqual(top.required, ['spec']);
  const spec = at(top, 'spec');
  assert.deepEqual(spec.required, ['sourceIP']);
  assert.deepEqual(Object.keys(spec.properties ?? {}).sort(), ['nodeSelector', 'sourceIP']);
  assert.match(rules(at(spec, 'nodeSelector')).join('\n'), /^self\.all\(k, k\.matches\(/);
  const sip = at(spec, 'sourceIP');
  assert.deepEqual(sip.required, ['mode']);
  assert.deepEqual(at(sip, 'mode').enum, ['VirtualIPAddress', 'PrimaryIPFromEgressGatewayNodeInterface']);
  assert.deepEqual(Object.keys(sip.properties ?? {}).sort(),
    ['mode', 'primaryIPFromEgressGatewayNodeInterface', 'virtualIPAddress']);
  const modeRules = sip['x-kubernetes-validations'] ?? [];
  // Mode and its own sub-object must agree; the other mode's sub-object is allowed (ignored), as in the reference.
  assert.equal(modeRules.length, 2);
  assert.ok(modeRules.every((r) => r.reason === 'FieldValueRequired'));
  for (const r of modeRules) {
    assert.ok(r.fieldPath === '.virtualIPAddress' || r.fieldPath === '.primaryIPFromEgressGatewayNodeInterface');
    assert.ok(r.message?.startsWith('spec.sourceIP.'), r.message);
  }
  assert.deepEqual(at(sip, 'virtualIPAddress').required, ['ip']);
  assert.deepEqual(Object.keys(at(sip, 'virtualIPAddress').properties ?? {}).sort(), ['interfaces', 'ip']);
  assert.deepEqual(rules(at(sip, 'virtualIPAddress.ip')), ['isIP(self)', '!isIP(self) || ip(self).isGlobalUnicast()']);
  assert.deepEqual(at(sip, 'primaryIPFromEgressGatewayNodeInterface').required, ['interfaceName']);
  for (const s of [at(sip, 'virtualIPAddress.interfaces.[]'), at(sip, 'primaryIPFromEgressGatewayNodeInterface.interfaceName')]) {
    assert.equal(s.pattern, '^[!-.0-9;-~]{1,15}$');
    assert.deepEqual(rules(s), ["self != '.' && self != '..'"]);
  }
  // D23: the description of virtualIPAddress names its own mode, and eligibility mentions the agent.
  assert.match(at(sip, 'virtualIPAddress').description ?? '', /mode: VirtualIPAddress/);
  assert.match(top.description ?? '', /heartbeat/);

  const status = at(top, 'status');
  for (const [f, t] of [['observedGeneration', 'integer'], ['readyNodes', 'integer'], ['totalNodes', 'integer'],
    ['activeNodeName', 'string'], ['lastFailoverReason', 'string'], ['lastFailoverTime', 'string']] as const) {
    assert.equal(at(status, f).type, t, f);
  }
  assert.equal(at(status, 'lastFailoverTime').format, 'date-time');
  assert.equal(status.required, undefined);
});

test('EgressGatewayPolicy: names, columns, required fields and CIDR rules', () => {
  const crd = load(crdDir, EGP);
  assert.equal(crd.spec.group, 'network.deckhouse.io');
  assert.equal(crd.spec.names.kind, 'EgressGatewayPolicy');
  assert.equal(crd.spec.names.plural, 'egressgatewaypolicies');
  const v = only(crd);
  const cols = columns(v);
  assert.equal(cols.get('Gateway'), '.spec.egressGatewayName');
  assert.equal(cols.get('Active node'), '.status.activeNodeName');

  const spec = at(v.schema.openAPIV3Schema, 'spec');
  assert.deepEqual(spec.required, ['egressGatewayName', 'destinationCIDRs', 'selectors']);
  assert.equal(at(spec, 'egressGatewayName').maxLength, 52);
  assert.equal(at(spec, 'destinationCIDRs').minItems, 1);
  assert.ok(at(spec, 'destinationCIDRs').maxItems, 'bounded for the CEL cost estimate');
  assert.deepEqual(rules(at(spec, 'destinationCIDRs.[]')), ['isCIDR(self)']);
  assert.deepEqual(rules(at(spec, 'excludedCIDRs.[]')), ['isCIDR(self)']);
  const [inside] = rules(spec);
  assert.ok(inside?.includes('cidr(d).containsCIDR(cidr(e))'));
  assert.ok(inside?.includes('cidr(d).ip().family() == cidr(e).ip().family()'), 'family mismatch is a rejection, not an error');
  assert.equal(at(spec, 'selectors').minItems, 1);
  assert.deepEqual(at(spec, 'selectors.[]').required, ['podSelector']);
  for (const sel of ['podSelector', 'namespaceSelector']) {
    const s = at(spec, `selectors.[].${sel}`);
    assert.equal(s['x-kubernetes-map-type'], 'atomic');
    assert.deepEqual(at(s, 'matchExpressions.[].operator').enum, ['In', 'NotIn', 'Exists', 'DoesNotExist']);
    assert.deepEqual(at(s, 'matchExpressions.[]').required, ['key', 'operator']);
    assert.equal(at(s, 'matchLabels.{}').maxLength, 63);
  }
  const status = at(v.schema.openAPIV3Schema, 'status');
  assert.deepEqual(Object.keys(status.properties ?? {}).sort(),
    ['activeNodeName', 'conditions', 'egressIP', 'interface', 'observedGeneration']);
});

test('SDNInternalEgressGatewayInstance: the reference shape, routingTableName kept', () => {
  const crd = load(crdDir, EGI);
  assert.equal(crd.spec.group, 'internal.network.deckhouse.io');
  assert.equal(crd.spec.names.kind, 'SDNInternalEgressGatewayInstance');
  const v = only(crd);
  const cols = columns(v);
  assert.equal(cols.get('IP'), '.spec.sourceIP.virtualIPAddress.ip');
  assert.equal(cols.get('Node'), '.spec.nodeName');
  const spec = at(v.schema.openAPIV3Schema, 'spec');
  assert.equal(at(spec, 'nodeName').type, 'string');
  assert.deepEqual(at(spec, 'sourceIP').required, ['mode']);
  assert.equal(at(spec, 'sourceIP.virtualIPAddress.routingTableName').type, 'string');
  assert.equal(at(spec, 'sourceIP.primaryIPFromEgressGatewayNodeInterface.interfaceName').type, 'string');
  assert.equal(at(v.schema.openAPIV3Schema, 'status.observedGeneration').type, 'integer');
});

test('Cilium fixture CRDs: CEGP validation as Cilium has it, CiliumNode open', () => {
  const cegp = load(ciliumDir, 'cilium.io_ciliumegressgatewaypolicies.yaml');
  assert.equal(cegp.metadata.name, 'ciliumegressgatewaypolicies.cilium.io');
  assert.equal(cegp.spec.scope, 'Cluster');
  assert.deepEqual(cegp.spec.names.shortNames, ['cegp']);
  const v = only(cegp);
  assert.equal(v.name, 'v2');
  const spec = at(v.schema.openAPIV3Schema, 'spec');
  assert.deepEqual(spec.required, ['destinationCIDRs', 'egressGateway', 'selectors']);
  const cidr = '^(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\\/([0-9]|[1-2][0-9]|3[0-2])$';
  assert.equal(at(spec, 'destinationCIDRs.[]').pattern, cidr);
  assert.equal(at(spec, 'excludedCIDRs.[]').pattern, cidr);
  assert.equal(at(spec, 'egressGateway.egressIP').format, 'ipv4');
  assert.equal(at(spec, 'egressGateway.interface').type, 'string');
  assert.equal(at(spec, 'egressGateway.nodeSelector.matchLabels.{}').maxLength, 63);
  for (const sel of ['podSelector', 'namespaceSelector', 'nodeSelector']) assert.ok(at(spec, `selectors.[].${sel}.matchLabels`));

  const cn = load(ciliumDir, 'cilium.io_ciliumnodes.yaml');
  assert.equal(cn.spec.names.kind, 'CiliumNode');
  assert.equal(cn.spec.scope, 'Cluster');
  const cnv = only(cn);
  assert.equal(cnv.name, 'v2');
  assert.equal(at(cnv.schema.openAPIV3Schema, 'spec')['x-kubernetes-preserve-unknown-fields'], true);
  assert.equal(at(cnv.schema.openAPIV3Schema, 'status')['x-kubernetes-preserve-unknown-fields'], true);
});

// The OpenAPI patterns are RE2 on the server; these ones use only syntax that JavaScript reads the same way, so
// their intent can be checked here without a server.
test('interface name and label patterns accept and reject what they should', () => {
  const v = only(load(crdDir, EG));
  const spec = at(v.schema.openAPIV3Schema, 'spec');
  const ifname = new RegExp(at(spec, 'sourceIP.primaryIPFromEgressGatewayNodeInterface.interfaceName').pattern ?? '');
  for (const ok of ['eth0', 'ens192', 'bond0.100', 'br-ext', 'veth_a@b', 'a', '123456789012345', '.x', '..x']) {
    assert.ok(ifname.test(ok), ok);
  }
  for (const bad of ['', '1234567890123456', 'eth/0', 'eth:0', 'eth 0', 'eth\t0', 'eth\n', 'äth0']) {
    assert.ok(!ifname.test(bad), JSON.stringify(bad));
  }
  const value = new RegExp(at(spec, 'nodeSelector.{}').pattern ?? '');
  for (const ok of ['', 'a', 'A-b_c.d', 'true']) assert.ok(value.test(ok), ok);
  for (const bad of ['-a', 'a-', 'a b', 'a/b']) assert.ok(!value.test(bad), bad);

  const keyRule = rules(at(spec, 'nodeSelector'))[0] ?? '';
  const keyRe = /matches\('([^']+)'\)/.exec(keyRule)?.[1];
  assert.ok(keyRe);
  const key = new RegExp(keyRe);
  for (const ok of ['node-role.deckhouse.io/egress', 'egress', 'kubernetes.io/hostname', 'a.b/C_d', 'x'.repeat(63)]) {
    assert.ok(key.test(ok), ok);
  }
  for (const bad of ['', '/egress', 'Deckhouse.io/egress', 'a/b/c', 'a b', '-a', 'x'.repeat(64), 'k8s:app']) {
    assert.ok(!key.test(bad), bad);
  }
});
