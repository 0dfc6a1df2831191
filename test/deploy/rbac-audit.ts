// The RBAC audit's arithmetic, shared by the audits of both data planes: which (verb, group, resource)
// requests an identity made (from the test API server's audit log) and what the install grants a
// ServiceAccount.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_NAMESPACE } from '../../src/api/names.ts';
import type { Manifest } from '../../src/cli/kustomize.ts';
import type { AuditEvent } from '../../src/testenv/apiserver.ts';

export interface Access {
  verb: string;
  group: string;
  resource: string;
  namespace: string | undefined;
}
export const key = (a: { verb: string; group: string; resource: string }): string => `${a.verb} ${a.group}/${a.resource}`;

export function usedBy(events: AuditEvent[], user: string): Access[] {
  const seen = new Map<string, Access>();
  for (const e of events) {
    if (e.user.username !== user || !e.objectRef?.resource) continue;
    const resource = e.objectRef.subresource ? `${e.objectRef.resource}/${e.objectRef.subresource}` : e.objectRef.resource;
    const a: Access = { verb: e.verb, group: e.objectRef.apiGroup ?? '', resource, namespace: e.objectRef.namespace };
    seen.set(`${key(a)} ${a.namespace ?? ''}`, a);
  }
  return [...seen.values()];
}

export interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}
export interface Grant {
  verb: string;
  group: string;
  resource: string;
  /** undefined: cluster-wide (ClusterRole through a ClusterRoleBinding). */
  namespace: string | undefined;
}

/** What the install grants a ServiceAccount, expanded to single (verb, group, resource) grants. */
export function grantsOf(manifests: Manifest[], serviceAccount: string): Grant[] {
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

export const granted = (grants: Grant[], a: Access): boolean =>
  grants.some((g) => g.verb === a.verb && g.group === a.group && g.resource === a.resource && (g.namespace === undefined || g.namespace === a.namespace));


/** The identity each component runs as in a cluster, and the one it has in the tests (src/testenv). */
export const COMPONENTS = {
  controller: { serviceAccount: 'egressgw-controller', user: `system:serviceaccount:${DEFAULT_NAMESPACE}:egressgw-controller` },
  // The test environment's agents authenticate as this user (src/testenv/env.ts).
  agent: { serviceAccount: 'egress-gateway-agent', user: 'egressgw-agent' },
} as const;

export interface Component {
  serviceAccount: string;
  /** The identity it has in the audit log of the test. */
  user: string;
}

/**
 * The two checks per component: every request it made is granted by the install, and every grant was used
 * (except `unexercised`: `verb group/resource` → why the scenario cannot reach it).
 */
export function auditTests(manifests: Manifest[], components: Record<string, Component>, unexercised: Record<string, Record<string, string>>, events: () => AuditEvent[]): void {
  for (const [component, id] of Object.entries(components)) {
    test(`${component}: every request is granted`, (t) => {
      const grants = grantsOf(manifests, id.serviceAccount);
      const used = usedBy(events(), id.user);
      t.diagnostic(`${id.user} used: ${[...new Set(used.map(key))].sort().join(', ')}`);
      assert.ok(used.length > 0, `the audit log has requests of ${id.user}`);
      const missing = used.filter((a) => !granted(grants, a)).map((a) => `${key(a)}${a.namespace ? ` in ${a.namespace}` : ''}`);
      assert.deepEqual(missing.sort(), [], 'used but not granted');
    });

    test(`${component}: every grant is used`, () => {
      const grants = grantsOf(manifests, id.serviceAccount);
      const used = new Set(usedBy(events(), id.user).map(key));
      const unused = [...new Set(grants.map(key))].filter((k) => !used.has(k) && !(k in (unexercised[component] ?? {})));
      assert.deepEqual(unused.sort(), [], 'granted but never used');
    });
  }
}
