// `egressgw manifests`: the install YAML, rendered from deploy/profiles/<profile> (the kustomize tree) with
// a few overrides.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { DATAPLANE_MODES, DEFAULT_PROFILE, PROFILES, type DataplaneMode, type ProfileName } from '../api/names.ts';
import { parseCIDR4 } from '../dataplane/ranges.ts';
import { applyLinuxDataplane, type LinuxDataplaneOptions } from './manifests-linux.ts';
import { UsageError, parseFlags } from '../term/errors.ts';
import { build, setNamespace, sortManifests, type Manifest } from './kustomize.ts';

export const DEPLOY_DIR = fileURLToPath(new URL('../../deploy/', import.meta.url));

const HELP = `Usage: egressgw manifests [flags]

Prints the install YAML (CRDs, RBAC, controller Deployment, agent DaemonSet, Services, PrometheusRule,
Grafana dashboard), rendered from the kustomize tree in deploy/profiles/<profile>. Apply it with
  egressgw manifests | kubectl apply --server-side -f -

Flags:
  --profile NAME      cilium (default): upstream Cilium; egressgw in ${PROFILES.cilium.namespace}, cilium-agent pods
                        found in ${PROFILES.cilium.ciliumNamespace} by ${PROFILES.cilium.ciliumSelector}
                      deckhouse: Deckhouse's cni-cilium layout; everything in ${PROFILES.deckhouse.namespace}, cilium-agent
                        pods found there by ${PROFILES.deckhouse.ciliumSelector}
  --namespace NS      namespace of the controller, the agents and their Leases (default: the profile's)
  --image IMG         container image of the controller and the agent (default: the one in deploy/kustomization.yaml)
  --replicas N        controller replicas (default 2; with 1 the PodDisruptionBudget is left out, it would block drains)
  --no-monitoring     leave out the PrometheusRule and the dashboard (clusters without prometheus-operator)
  --no-crds           leave out the CustomResourceDefinitions
  --dataplane MODE    cilium (default: Cilium's egress gateway carries the traffic) or linux (our own data plane
                      on nftables, policy routing and VXLAN-GPE; the agent runs on every node; docs/dataplane.md)
  --pod-cidr CIDR     linux: the cluster's pod CIDR (IPv4; repeat for several); required with --dataplane linux
  --service-cidr CIDR linux: the cluster's service CIDR (IPv4; repeat for several); required with --dataplane linux
  -h, --help          this help`;

export interface RenderOptions {
  profile?: ProfileName;
  namespace?: string;
  image?: string;
  replicas?: number;
  monitoring?: boolean;
  crds?: boolean;
  /** `linux`: the install of the Linux data plane (manifests-linux.ts). */
  dataplane?: DataplaneMode;
  linux?: LinuxDataplaneOptions;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const isProfile = (name: string): name is ProfileName => Object.hasOwn(PROFILES, name);

/** The install manifests, in apply order. */
export function renderManifests(opts: RenderOptions = {}, deployDir = DEPLOY_DIR): Manifest[] {
  const origins = new Map<Manifest, string>();
  const profileDir = join(deployDir, 'profiles', opts.profile ?? DEFAULT_PROFILE);
  if (!existsSync(profileDir)) throw new Error(`install profile ${opts.profile}: ${profileDir} does not exist`);
  let manifests = build(profileDir, origins);
  if (opts.monitoring === false) manifests = manifests.filter((m) => origins.get(m) !== join(deployDir, 'monitoring'));
  if (opts.crds === false) manifests = manifests.filter((m) => m.kind !== 'CustomResourceDefinition');
  if (opts.namespace !== undefined) setNamespace(manifests, opts.namespace);
  if (opts.image !== undefined) {
    for (const m of manifests) {
      const containers = (m as { spec?: { template?: { spec?: { containers?: Array<{ image?: string }> } } } }).spec?.template?.spec?.containers;
      if (!containers) continue;
      // The deploy tree already resolved its own image rule; the override replaces the whole reference.
      for (const c of containers) c.image = opts.image;
    }
  }
  if (opts.replicas !== undefined) {
    for (const m of manifests) {
      if (m.kind === 'Deployment') (m.spec as { replicas?: number }).replicas = opts.replicas;
    }
    if (opts.replicas < 2) manifests = manifests.filter((m) => m.kind !== 'PodDisruptionBudget');
  }
  if (opts.dataplane === 'linux') applyLinuxDataplane(manifests, opts.linux ?? { podCIDRs: [], serviceCIDRs: [] });
  return sortManifests(manifests);
}

export function toYAML(manifests: Manifest[]): string {
  return manifests.map((m) => stringify(m, { lineWidth: 0 })).join('---\n');
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(
    argv,
    {
      profile: { type: 'string' },
      namespace: { type: 'string' },
      image: { type: 'string' },
      replicas: { type: 'string' },
      'no-monitoring': { type: 'boolean' },
      'no-crds': { type: 'boolean' },
      dataplane: { type: 'string' },
      'pod-cidr': { type: 'string', multiple: true },
      'service-cidr': { type: 'string', multiple: true },
    },
    HELP,
  );
  if (!parsed) return 0;
  const v = parsed.values;
  const opts: RenderOptions = { monitoring: !v['no-monitoring'], crds: !v['no-crds'] };
  if (v.profile !== undefined) {
    if (!isProfile(v.profile)) throw new UsageError(`--profile: "${v.profile}" is not a profile (${Object.keys(PROFILES).join(', ')})`);
    opts.profile = v.profile;
  }
  if (v.namespace !== undefined) {
    if (!DNS_LABEL.test(v.namespace) || v.namespace.length > 63) throw new UsageError(`--namespace: "${v.namespace}" is not a valid namespace name`);
    opts.namespace = v.namespace;
  }
  if (v.image !== undefined) {
    if (v.image === '' || /\s/.test(v.image)) throw new UsageError(`--image: "${v.image}" is not an image reference`);
    opts.image = v.image;
  }
  if (v.replicas !== undefined) {
    const n = Number(v.replicas);
    if (!Number.isInteger(n) || n < 1 || n > 10) throw new UsageError(`--replicas: "${v.replicas}" must be an integer from 1 to 10`);
    opts.replicas = n;
  }
  const mode = v.dataplane ?? 'cilium';
  if (!DATAPLANE_MODES.includes(mode as DataplaneMode)) throw new UsageError(`--dataplane: "${mode}" is not one of ${DATAPLANE_MODES.join(', ')}`);
  opts.dataplane = mode as DataplaneMode;
  const podCIDRs = v['pod-cidr'] ?? [];
  const serviceCIDRs = v['service-cidr'] ?? [];
  if (mode === 'linux') {
    for (const [flag, list] of [['--pod-cidr', podCIDRs], ['--service-cidr', serviceCIDRs]] as const) {
      if (list.length === 0) throw new UsageError(`${flag} is required with --dataplane linux (the agents must know the cluster's ${flag.slice(2, -5)} CIDRs)`);
      for (const c of list) {
        const p = parseCIDR4(c);
        if ('error' in p) throw new UsageError(`${flag}: ${p.error}`);
      }
    }
    opts.linux = { podCIDRs, serviceCIDRs };
  } else if (podCIDRs.length > 0 || serviceCIDRs.length > 0) {
    throw new UsageError('--pod-cidr and --service-cidr need --dataplane linux');
  }
  process.stdout.write(toYAML(renderManifests(opts)));
  return 0;
}
