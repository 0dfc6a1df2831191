// The install as rendered by `egressgw manifests` (no server needed): the properties the issue asks for, the
// overrides, and that alerts and dashboard query only metrics the controller and the agent really export.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderManifests } from '../../src/cli/manifests.ts';
import { applyJsonPatch, build, type Manifest } from '../../src/cli/kustomize.ts';
import { PROFILES, type ProfileName } from '../../src/api/names.ts';
import { parseControllerArgs } from '../../src/controller/options.ts';
import { AGENT_FLAGS, buildAgentOptions } from '../../src/agent/options.ts';
import { parseArgs } from 'node:util';
import { containerRun } from './pod-args.ts';

const ROOT = join(import.meta.dirname, '..', '..');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const find = (ms: Manifest[], kind: string, name?: string): Obj => {
  const m = ms.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  assert.ok(m, `${kind} ${name ?? ''} rendered`);
  return m as Obj;
};

describe('default install', () => {
  const ms = renderManifests();

  test('CRDs and the namespace come first', () => {
    assert.equal(ms[0]?.kind, 'Namespace');
    assert.equal(ms[0]?.metadata.name, 'egressgw-system');
    const firstOther = ms.findIndex((m) => m.kind !== 'Namespace' && m.kind !== 'CustomResourceDefinition');
    assert.equal(ms.filter((m) => m.kind === 'CustomResourceDefinition').length, 4);
    assert.ok(ms.slice(firstOther).every((m) => m.kind !== 'CustomResourceDefinition'));
  });

  test('controller: 2 replicas apart, PDB, non-root, read-only, no capabilities, probes, metrics', () => {
    const d = find(ms, 'Deployment', 'egressgw-controller');
    const pod = d.spec.template.spec;
    assert.equal(d.spec.replicas, 2);
    assert.equal(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey, 'kubernetes.io/hostname');
    assert.equal(find(ms, 'PodDisruptionBudget').spec.minAvailable, 1);
    assert.equal(pod.securityContext.runAsNonRoot, true);
    const c = pod.containers[0];
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
    assert.deepEqual([c.livenessProbe.httpGet.path, c.readinessProbe.httpGet.path], ['/healthz', '/readyz']);
    assert.ok(c.args.includes('--metrics-addr=:8080'));
    assert.equal(find(ms, 'Service', 'egressgw-controller-metrics').spec.ports[0].port, 8080);
  });

  test('agent: member nodes, host network, NET_ADMIN + NET_RAW only, probes on 127.0.0.1:9870', () => {
    const ds = find(ms, 'DaemonSet', 'egress-gateway-agent');
    const pod = ds.spec.template.spec;
    assert.deepEqual(pod.nodeSelector, { 'egress-gateway.network.deckhouse.io/member': '' });
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.ok(pod.terminationGracePeriodSeconds <= 5);
    const c = pod.containers[0];
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] });
    assert.deepEqual(c.env.find((e: Obj) => e.name === 'NODE_NAME').valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    for (const p of [c.livenessProbe, c.readinessProbe]) assert.deepEqual([p.httpGet.host, p.httpGet.port], ['127.0.0.1', 9870]);
  });

  test('alerts and dashboard use only metrics the controller and the agent export', () => {
    const exported = new Set<string>();
    for (const f of ['src/controller/metrics.ts', 'src/agent/metrics.ts']) {
      for (const m of readFileSync(join(ROOT, f), 'utf8').matchAll(/name: '((?:egressgw|d8)_[a-z0-9_]+)'/g)) exported.add(m[1]!);
    }
    const histogramSeries = (n: string): string => n.replace(/_(bucket|sum|count)$/, '');
    const rule = find(ms, 'PrometheusRule');
    const exprs: string[] = rule.spec.groups.flatMap((g: Obj) => g.rules.map((r: Obj) => String(r.expr)));
    const dashboard = JSON.parse(find(ms, 'ConfigMap', 'egressgw-grafana-dashboard').data['egressgw.json']) as Obj;
    exprs.push(...dashboard.panels.flatMap((p: Obj) => p.targets.map((t: Obj) => t.expr as string)));
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\b((?:egressgw|d8_cni_cilium)_[a-z0-9_]+)/g)].map((m) => histogramSeries(m[1]!))));
    assert.deepEqual([...used].filter((n) => !exported.has(n)).sort(), []);
    assert.ok(used.has('d8_cni_cilium_orphan_egress_gateway_policy') && used.has('egressgw_orphan_policy'));
    const alerts: string[] = rule.spec.groups.flatMap((g: Obj) => g.rules.map((r: Obj) => r.alert));
    assert.ok(alerts.includes('CniCiliumOrphanEgressGatewayPolicyFound'), 'the reference alert is kept');
  });
});

describe('overrides', () => {
  test('--namespace moves every namespaced object, the Namespace and the ServiceAccount subjects', () => {
    const ms = renderManifests({ namespace: 'egress-system' });
    assert.equal(find(ms, 'Namespace').metadata.name, 'egress-system');
    for (const m of ms) {
      if (['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'].includes(m.kind)) assert.equal(m.metadata.namespace, undefined);
      else assert.equal(m.metadata.namespace, 'egress-system', `${m.kind}/${m.metadata.name}`);
      for (const s of ((m as Obj).subjects ?? []) as Obj[]) assert.equal(s.namespace, 'egress-system');
    }
  });

  test('--image, --replicas 1 (and no PDB to block drains), --no-monitoring, --no-crds', () => {
    const ms = renderManifests({ image: 'registry.example.com/egressgw:v2', replicas: 1, monitoring: false, crds: false });
    for (const kind of ['Deployment', 'DaemonSet']) assert.equal(find(ms, kind).spec.template.spec.containers[0].image, 'registry.example.com/egressgw:v2');
    assert.equal(find(ms, 'Deployment').spec.replicas, 1);
    const kinds = new Set(ms.map((m) => m.kind));
    for (const k of ['PodDisruptionBudget', 'PrometheusRule', 'ConfigMap', 'CustomResourceDefinition']) assert.ok(!kinds.has(k), k);
  });
});

describe('install profiles', () => {
  const namespaced = (m: Manifest): boolean => !['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'].includes(m.kind);

  for (const name of Object.keys(PROFILES) as ProfileName[]) {
    const profile = PROFILES[name];
    test(`${name}: the rendered controller and agent look where the profile says (${profile.namespace}; cilium-agent pods in ${profile.ciliumNamespace}, ${profile.ciliumSelector})`, () => {
      const ms = renderManifests({ profile: name });
      assert.equal(find(ms, 'Namespace').metadata.name, profile.namespace);
      for (const m of ms.filter(namespaced)) assert.equal(m.metadata.namespace, profile.namespace, `${m.kind}/${m.metadata.name}`);
      // The controller's options from exactly the Deployment's args, expanded as the kubelet would.
      const pod = { namespace: profile.namespace, name: 'egressgw-controller-0', nodeName: 'n1' };
      const c = parseControllerArgs(containerRun(find(ms, 'Deployment', 'egressgw-controller'), 'controller', pod).args.slice(1));
      assert.deepEqual(
        [c.ciliumNamespace, c.ciliumSelector, c.agentNamespace, c.heartbeatNamespace, c.leaderElectNamespace],
        [profile.ciliumNamespace, profile.ciliumSelector, profile.namespace, profile.namespace, profile.namespace],
      );
      const agentRun = containerRun(find(ms, 'DaemonSet', 'egress-gateway-agent'), 'agent', pod);
      const { values } = parseArgs({ args: agentRun.args.slice(1), options: AGENT_FLAGS, strict: true });
      assert.equal(buildAgentOptions(values, Object.fromEntries(agentRun.env)).heartbeatNamespace, profile.namespace);
      // Both refer to the same ServiceAccounts, bound in the same namespace.
      for (const b of ms.filter((m) => m.kind === 'RoleBinding' || m.kind === 'ClusterRoleBinding')) {
        for (const s of (b as Obj).subjects as Obj[]) assert.equal(s.namespace, profile.namespace, `${b.kind}/${b.metadata.name}`);
        const ref = (b as Obj).roleRef as Obj;
        assert.ok(ms.some((r) => r.kind === ref.kind && r.metadata.name === ref.name), `${b.kind}/${b.metadata.name} → ${ref.kind}/${ref.name}`);
      }
    });
  }

  test('cilium (the default): its own namespace and labels, the controller passes no --cilium-* flags (its defaults are this profile)', () => {
    const ms = renderManifests();
    assert.deepEqual(ms.map((m) => m.metadata.name), renderManifests({ profile: 'cilium' }).map((m) => m.metadata.name));
    const args: string[] = find(ms, 'Deployment').spec.template.spec.containers[0].args;
    assert.deepEqual(args.filter((a) => a.startsWith('--cilium-')), []);
    for (const m of ms.filter((x) => x.kind !== 'CustomResourceDefinition')) {
      assert.equal(m.metadata.labels?.['app.kubernetes.io/part-of'], 'egressgw', `${m.kind}/${m.metadata.name}`);
      assert.equal(m.metadata.labels?.heritage, undefined, `${m.kind}/${m.metadata.name}`);
    }
    assert.deepEqual(ms.filter((m) => m.kind === 'ClusterRole').map((m) => m.metadata.name).sort(), ['egressgw-agent', 'egressgw-controller']);
  });

  test("deckhouse: today's layout, Deckhouse's labels on objects and pod templates, Deckhouse's cluster-role names", () => {
    const ms = renderManifests({ profile: 'deckhouse' });
    for (const m of ms) assert.equal(m.metadata.labels?.module, 'cni-cilium', `${m.kind}/${m.metadata.name}`);
    for (const kind of ['Deployment', 'DaemonSet']) assert.equal(find(ms, kind).spec.template.metadata.labels.heritage, 'deckhouse');
    assert.deepEqual(ms.filter((m) => m.kind === 'ClusterRole').map((m) => m.metadata.name).sort(), ['d8:cni-cilium:egress-gateway-agent', 'd8:cni-cilium:egressgw-controller']);
  });
});

describe('kustomize subset: labels and JSON 6902 patches', () => {
  test('add (append with -), replace and remove; a missing path or an unknown op is an error naming the patch', () => {
    const o = { spec: { args: ['a'], name: 'x', gone: 1 } };
    applyJsonPatch(o, [{ op: 'add', path: '/spec/args/-', value: 'b' }, { op: 'replace', path: '/spec/name', value: 'y' }, { op: 'remove', path: '/spec/gone' }], 'here');
    assert.deepEqual(o, { spec: { args: ['a', 'b'], name: 'y' } });
    assert.throws(() => applyJsonPatch(o, [{ op: 'replace', path: '/spec/nope', value: 1 }], 'here'), /here: patch path "\/spec\/nope" does not exist/);
    assert.throws(() => applyJsonPatch(o, [{ op: 'move', path: '/spec/name' }], 'here'), /here: patch op "move"/);
  });

  test('the profiles build with only the supported fields (a kustomize binary renders the same tree)', () => {
    for (const name of Object.keys(PROFILES)) assert.ok(build(join(ROOT, 'deploy', 'profiles', name)).length > 10, name);
    // deploy/ itself is the default profile, for `kubectl apply -k deploy/`.
    assert.deepEqual(build(join(ROOT, 'deploy')).map((m) => `${m.kind}/${m.metadata.name}`), build(join(ROOT, 'deploy', 'profiles', 'cilium')).map((m) => `${m.kind}/${m.metadata.name}`));
  });
});

describe('--dataplane linux', () => {
  const ms = renderManifests({ dataplane: 'linux', linux: { podCIDRs: ['10.0.0.0/16'], serviceCIDRs: ['10.96.0.0/12'] } });
  const cilium = renderManifests();

  test('the controller renders dataplane objects; the agent runs on every node with the cluster CIDRs', () => {
    const c = find(ms, 'Deployment', 'egressgw-controller').spec.template.spec.containers[0];
    assert.ok(c.args.includes('--dataplane=linux'));
    const pod = find(ms, 'DaemonSet', 'egress-gateway-agent').spec.template.spec;
    assert.equal(pod.nodeSelector, undefined, 'every node, not only members');
    const a = pod.containers[0];
    for (const arg of ['--dataplane=linux', '--pod-cidr=10.0.0.0/16', '--service-cidr=10.96.0.0/12', '--daemonset=$(POD_NAMESPACE)/egress-gateway-agent']) assert.ok(a.args.includes(arg), arg);
    assert.equal(a.securityContext.privileged, true);
  });

  test('RBAC: the controller writes the dataplane objects, the agent reads them and its node\'s pods', () => {
    const rules = (name: string): Obj[] => find(ms, 'ClusterRole', name).rules;
    assert.ok(rules('egressgw-controller').some((r) => r.resources.includes('sdninternalegressgatewaydataplanes') && r.verbs.includes('patch') && r.verbs.includes('delete')));
    const agent = rules('egressgw-agent');
    assert.ok(agent.some((r) => r.resources.includes('sdninternalegressgatewaydataplanes') && r.verbs.includes('watch')));
    assert.ok(agent.some((r) => r.resources.includes('sdninternalegressgatewaydataplanes/status') && r.verbs.includes('patch')), 'the active node publishes its SNAT remaps');
    assert.ok(agent.some((r) => r.resources.includes('pods') && r.verbs.includes('list')));
    assert.ok(find(ms, 'Role', 'egress-gateway-agent-heartbeat').rules.some((r: Obj) => r.resources.includes('daemonsets') && r.verbs.includes('get')));
  });

  test('the Cilium install is untouched by the option\'s existence', () => {
    const pod = find(cilium, 'DaemonSet', 'egress-gateway-agent').spec.template.spec;
    assert.deepEqual(pod.nodeSelector, { 'egress-gateway.network.deckhouse.io/member': '' });
    assert.ok(!find(cilium, 'ClusterRole', 'egressgw-agent').rules.some((r: Obj) => r.resources.includes('pods')));
  });
});
