// `egressgw manifests --dataplane linux`: the install of the Linux data plane (docs/dataplane.md), as a
// transformation of the default tree, so that the Cilium install stays exactly what deploy/ says.
//
//  - controller: `--dataplane=linux` (renders the per-gateway dataplane objects, not CEGPs);
//  - agent DaemonSet on EVERY node (it programs each node's share; the VIP part still runs only on members),
//    with the cluster's pod and service CIDRs, and privileged: it writes a sysctl of its tunnel device
//    (rp_filter), and /proc/sys is read-only in an unprivileged container;
//  - RBAC: the controller writes the dataplane objects; the agent reads them and patches their status (the
//    active node's SNAT remaps), its node's pods (field selector), namespaces, its own Node (member label), records events, and reads its DaemonSet at exit
//    (gone or deleting = uninstall: remove the data plane from the node).

import { INTERNAL_GROUP, PLURAL_DATAPLANES } from '../api/names.ts';
import type { Manifest } from './kustomize.ts';

export interface LinuxDataplaneOptions {
  podCIDRs: readonly string[];
  serviceCIDRs: readonly string[];
}

type Obj = Record<string, unknown>;
const AGENT = 'egress-gateway-agent';

function containers(m: Manifest): Array<Obj & { name?: string; args?: string[]; securityContext?: Obj }> {
  return ((m.spec as { template?: { spec?: { containers?: Obj[] } } } | undefined)?.template?.spec?.containers ?? []) as Array<Obj & { args?: string[] }>;
}

/** The ClusterRole bound to a ServiceAccount (profiles rename the roles, not the accounts). */
function roleOf(manifests: readonly Manifest[], serviceAccount: string): string | undefined {
  for (const b of manifests) {
    if (b.kind !== 'ClusterRoleBinding') continue;
    const x = b as unknown as { subjects?: Array<{ kind?: string; name?: string }>; roleRef?: { name?: string } };
    if (x.subjects?.some((s) => s.kind === 'ServiceAccount' && s.name === serviceAccount)) return x.roleRef?.name;
  }
  return undefined;
}

export function applyLinuxDataplane(manifests: Manifest[], o: LinuxDataplaneOptions): void {
  const controllerRole = roleOf(manifests, 'egressgw-controller');
  const agentRole = roleOf(manifests, AGENT);
  for (const m of manifests) {
    if (m.kind === 'Deployment' && m.metadata.name === 'egressgw-controller') {
      for (const c of containers(m)) if (c.name === 'controller') c.args = [...(c.args ?? []), '--dataplane=linux'];
    }
    if (m.kind === 'DaemonSet' && m.metadata.name === AGENT) {
      const pod = (m.spec as { template: { spec: Obj } }).template.spec;
      delete pod.nodeSelector;
      for (const c of containers(m)) {
        if (c.name !== 'agent') continue;
        c.args = [
          ...(c.args ?? []),
          '--dataplane=linux',
          ...o.podCIDRs.map((x) => `--pod-cidr=${x}`),
          ...o.serviceCIDRs.map((x) => `--service-cidr=${x}`),
          `--daemonset=$(POD_NAMESPACE)/${AGENT}`,
        ];
        c.securityContext = { runAsUser: 0, runAsNonRoot: false, privileged: true, readOnlyRootFilesystem: true, seccompProfile: { type: 'RuntimeDefault' } };
      }
    }
    const rules = (m as { rules?: Obj[] }).rules;
    if (m.kind === 'ClusterRole' && m.metadata.name === controllerRole && rules) {
      rules.push({ apiGroups: [INTERNAL_GROUP], resources: [PLURAL_DATAPLANES], verbs: ['list', 'watch', 'create', 'patch', 'delete'] });
    }
    if (m.kind === 'ClusterRole' && m.metadata.name === agentRole && rules) {
      rules.push(
        { apiGroups: [INTERNAL_GROUP], resources: [PLURAL_DATAPLANES], verbs: ['list', 'watch'] },
        // The active node publishes its SNAT remaps in the status (docs/dataplane.md, failover).
        { apiGroups: [INTERNAL_GROUP], resources: [`${PLURAL_DATAPLANES}/status`], verbs: ['patch'] },
        // Its own node's pods only, by field selector (RBAC cannot express that; the kubelet's own pattern).
        { apiGroups: [''], resources: ['pods', 'namespaces', 'nodes'], verbs: ['list', 'watch'] },
        { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
      );
    }
    if (m.kind === 'Role' && m.metadata.name === 'egress-gateway-agent-heartbeat' && rules) {
      rules.push({ apiGroups: ['apps'], resources: ['daemonsets'], resourceNames: [AGENT], verbs: ['get'] });
    }
  }
}
