// Least privilege, checked against reality: the controller and real agents run against the test API server
// (which allows everything and writes an audit log naming each client's identity) through a scenario that
// exercises their write paths; every (verb, group, resource[/subresource]) each identity used must be
// granted by that component's RBAC in the install, and every grant must have been used — except the few
// listed in UNEXERCISED with the reason the scenario cannot reach them.
//
// Needs root and `ip netns` (the agents run in network namespaces, via src/testenv/env.ts).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_NAMESPACE, MOVE_TO_ANNOTATION, cegpName } from '../../src/api/names.ts';
import type { EgressGateway, EgressGatewayInstance } from '../../src/api/types.ts';
import { renderManifests } from '../../src/cli/manifests.ts';
import type { Manifest } from '../../src/cli/kustomize.ts';
import { runController } from '../../src/controller/controller.ts';
import { parseControllerArgs } from '../../src/controller/options.ts';
import { CEGPS, GATEWAYS, INSTANCES, NODES, POLICIES } from '../../src/kube/resources.ts';
import type { AuditEvent } from '../../src/testenv/apiserver.ts';
import { startTestEnv, type TestEnv } from '../../src/testenv/env.ts';
import { poll } from '../../src/testenv/poll.ts';
import { activeInstance } from '../../src/testenv/queries.ts';
import { TEST_VIP } from '../../src/testenv/seed.ts';

const canRun = process.getuid?.() === 0;

/** The identity each component runs as in a cluster, and the one it has in this test. */
const COMPONENTS = {
  controller: { serviceAccount: 'egressgw-controller', user: `system:serviceaccount:${DEFAULT_NAMESPACE}:egressgw-controller` },
  // The test environment's agents authenticate as this user (src/testenv/env.ts).
  agent: { serviceAccount: 'egress-gateway-agent', user: 'egressgw-agent' },
} as const;

/**
 * Grants the scenario cannot exercise, with why they are still needed. Anything else unused fails the test.
 * Keys: `verb group/resource`.
 */
const UNEXERCISED: Record<keyof typeof COMPONENTS, Record<string, string>> = {
  controller: {
    // Server-side apply that creates an object is audited as patch, but authorized as patch and create.
    'create cilium.io/ciliumegressgatewaypolicies': 'SSA creation is authorized as create',
    // updateInstance falls back to a GET only when the instance is missing from the informer cache.
    'get internal.network.deckhouse.io/sdninternalegressgatewayinstances': 'cache-miss fallback of updateInstance',
    // The recorder bumps an event series only when an identical event recurs 30 s or more after the last write.
    'patch events.k8s.io/events': 'event series updates',
  },
  agent: {},
};

interface Access {
  verb: string;
  group: string;
  resource: string;
  namespace: string | undefined;
}
const key = (a: { verb: string; group: string; resource: string }): string => `${a.verb} ${a.group}/${a.resource}`;

function usedBy(events: AuditEvent[], user: string): Access[] {
  const seen = new Map<string, Access>();
  for (const e of events) {
    if (e.user.username !== user || !e.objectRef?.resource) continue;
    const resource = e.objectRef.subresource ? `${e.objectRef.resource}/${e.objectRef.subresource}` : e.objectRef.resource;
    const a: Access = { verb: e.verb, group: e.objectRef.apiGroup ?? '', resource, namespace: e.objectRef.namespace };
    seen.set(`${key(a)} ${a.namespace ?? ''}`, a);
  }
  return [...seen.values()];
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
interface Grant {
  verb: string;
  group: string;
  resource: string;
  /** undefined: cluster-wide (ClusterRole through a ClusterRoleBinding). */
  namespace: string | undefined;
}

/** What the install grants a ServiceAccount, expanded to single (verb, group, resource) grants. */
function grantsOf(manifests: Manifest[], serviceAccount: string): Grant[] {
  const roles = new Map(manifests.filter((m) => m.kind === 'Role' || m.kind === 'ClusterRole').map((m) => [`${m.kind}/${m.metadata.namespace ?? ''}/${m.metadata.name}`, m]));
  const out: Grant[] = [];
  for (const b of manifests.filter((m) => m.kind === 'RoleBinding' || m.kind === 'ClusterRoleBinding')) {
    const subjects = (b.subjects as Array<{ kind: string; name: string }> | undefined) ?? [];
    if (!subjects.some((s) => s.kind === 'ServiceAccount' && s.name === serviceAccount)) continue;
    const ref = b.roleRef as { kind: string; name: string };
    const ns = b.kind === 'RoleBinding' ? b.metadata.namespace : undefined;
    const role = roles.get(`${ref.kind}/${ref.kind === 'Role' ? (ns ?? '') : ''}/${ref.name}`);
    assert.ok(role, `${b.kind}/${b.metadata.name} refers to a role in the install`);
    for (const r of (role.rules as Rule[]) ?? []) {
      for (const group of r.apiGroups) for (const resource of r.resources) for (const verb of r.verbs) out.push({ verb, group, resource, namespace: ns });
    }
  }
  return out;
}

const granted = (grants: Grant[], a: Access): boolean =>
  grants.some((g) => g.verb === a.verb && g.group === a.group && g.resource === a.resource && (g.namespace === undefined || g.namespace === a.namespace));

describe('RBAC of the install is exactly what the components use', { skip: canRun ? false : 'needs root for network namespaces' }, () => {
  let env: TestEnv;
  const stop = new AbortController();
  let controller: Promise<void> | undefined;

  before(async () => {
    env = await startTestEnv({ nodes: 2, controller: false });
    // The controller as its ServiceAccount, with leader election on (as deployed).
    // A generous handover timeout: this test records which requests the components make, and on a loaded
    // CI machine an agent may confirm a move after the default 5 s, which would turn the move into a
    // (correct) MoveRejected and leave the move's requests unrecorded.
    const options = parseControllerArgs(['--metrics-addr=', '--log-level=warn', '--leader-elect-retry-period=500ms', '--leader-elect-renew-deadline=2s', '--leader-elect-lease-duration=3s', '--handover-timeout=30s']);
    controller = runController(options, { signal: stop.signal, kubeConfig: env.cluster.clientFor(COMPONENTS.controller.user) });

    const client = env.client;
    const gw = (): Promise<EgressGateway> => client.get<EgressGateway>(GATEWAYS, 'audit');
    const readyOn = async (node?: string): Promise<string | undefined> => {
      const g = await gw();
      const ok = g.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      return ok && g.status?.activeNodeName && (!node || g.status.activeNodeName === node) ? g.status.activeNodeName : undefined;
    };

    // Elect, announce, render a policy and report an orphan one (instances, labels, CEGP, statuses, events).
    await env.createVipGateway('audit', TEST_VIP);
    await env.applyYaml([
      { apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGatewayPolicy', metadata: { name: 'audit' },
        spec: { egressGatewayName: 'audit', destinationCIDRs: ['192.0.2.0/24'], selectors: [{ podSelector: { matchLabels: { app: 'x' } } }] } },
      { apiVersion: 'network.deckhouse.io/v1alpha1', kind: 'EgressGatewayPolicy', metadata: { name: 'audit-orphan' },
        spec: { egressGatewayName: 'missing', destinationCIDRs: ['192.0.2.0/24'], selectors: [{ podSelector: { matchLabels: { app: 'x' } } }] } },
    ]);
    const first = await poll('gateway Ready', () => readyOn(), 60_000);

    // A change of VIP updates the live instance in place (PUT).
    await client.mergePatch(GATEWAYS, 'audit', { spec: { sourceIP: { virtualIPAddress: { ip: '198.18.0.101' } } } });
    await poll('instance updated', async () => (await activeInstance(client, 'audit'))?.ready && (await gw()).status?.conditions?.some((c) => c.status === 'True'), 60_000);

    // A move: the annotation is cleared by the controller; the old instance is deleted, its agent releases it.
    // Only once the other node is eligible too (its agent heartbeats): before that the controller rightly
    // rejects the move ("AgentMissing"), which happened on a loaded CI machine where that agent started late.
    const other = env.nodes.find((n) => n.name !== first)!.name;
    await poll('both nodes eligible', async () => (await gw()).status?.readyNodes === env.nodes.length, 60_000);
    await client.mergePatch(GATEWAYS, 'audit', { metadata: { annotations: { [MOVE_TO_ANNOTATION]: other } } });
    await poll('moved', () => readyOn(other), 60_000);
    await poll('move request cleared', async () => (await gw()).metadata.annotations?.[MOVE_TO_ANNOTATION] === undefined, 30_000);
    // The old node's agent withdraws the VIP and releases its instance's finalizer (its `patch` on
    // instances); awaited here, or a slow agent is killed below before it made that request.
    await poll(`the instance on ${first} released by its agent`, async () =>
      !(await client.list<EgressGatewayInstance>(INSTANCES)).items.some((i) => i.spec?.nodeName === first), 60_000);

    // The active node dies hard: its agent is gone, the controller releases the finalizer itself.
    const dead = env.nodes.find((n) => n.name === other)!;
    dead.agent.kill('SIGKILL');
    await dead.agent.exited;
    await env.setNodeReady(dead.name, false);
    await poll('failed over', () => readyOn(first), 60_000);

    // A graceful agent shutdown deletes its heartbeat Lease.
    const survivor = env.nodes.find((n) => n.name === first)!;
    survivor.agent.kill('SIGTERM');
    await survivor.agent.exited;

    // Deleting the policy deletes its CEGP.
    await client.delete(POLICIES, 'audit');
    await poll(`CEGP ${cegpName('audit')} deleted`, async () => (await client.tryGet(CEGPS, cegpName('audit'))) === undefined, 30_000);
    await client.mergePatch(NODES, dead.name, { spec: { unschedulable: true } });
    stop.abort();
    await controller;
  });

  after(async () => {
    stop.abort();
    await controller;
    await env?.stop();
  });

  const manifests = renderManifests();
  for (const [component, id] of Object.entries(COMPONENTS) as Array<[keyof typeof COMPONENTS, (typeof COMPONENTS)[keyof typeof COMPONENTS]]>) {
    test(`${component}: every request is granted`, (t) => {
      const grants = grantsOf(manifests, id.serviceAccount);
      const used = usedBy(env.cluster.auditEvents(), id.user);
      t.diagnostic(`${id.user} used: ${[...new Set(used.map(key))].sort().join(', ')}`);
      assert.ok(used.length > 0, `the audit log has requests of ${id.user}`);
      const missing = used.filter((a) => !granted(grants, a)).map((a) => `${key(a)}${a.namespace ? ` in ${a.namespace}` : ''}`);
      assert.deepEqual(missing.sort(), [], 'used but not granted');
    });

    test(`${component}: every grant is used`, () => {
      const grants = grantsOf(manifests, id.serviceAccount);
      const used = new Set(usedBy(env.cluster.auditEvents(), id.user).map(key));
      const unused = [...new Set(grants.map(key))].filter((k) => !used.has(k) && !(k in UNEXERCISED[component]));
      assert.deepEqual(unused.sort(), [], 'granted but never used');
    });
  }
});
