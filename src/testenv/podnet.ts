// Pods and an "internet" on top of the network-namespace LAN (netns.ts), for the Linux data plane:
//
//   internet ns <id>-inet: eth0 203.0.113.10/24 and 198.51.100.10/24 ── up0 on the router (.1 of both)
//   router: forwards between the LAN (198.18.0.0/24) and the internet; knows no pod routes
//   node K (LAN 198.18.0.(10+K)): pod CIDR 198.18.(16+K).0/24, routes to every other node's pod CIDR via
//     its LAN address (as kube-router or flannel host-gw install them), rp_filter strict, forwarding on,
//     and the CNI's masquerade (table ip podnet: pod → outside the cluster, any interface, as Flannel's
//     rule has no interface match)
//   pod J on node K: ns <id>-pK-J, eth0 198.18.(16+K).(10+J)/32, default via 169.254.1.1 (proxy ARP on the
//     node's veth, as Calico does), node route 198.18.(16+K).(10+J)/32 dev <veth>
//
// Cluster CIDRs: pods 198.18.16.0/20, services 198.18.48.0/24. All TEST-NET addresses.
import { ROUTER_IP, type Network, type NetNode } from './netns.ts';

export const POD_CIDR = '198.18.16.0/20';
export const SERVICE_CIDR = '198.18.48.0/24';
export const INTERNET_IP = '203.0.113.10';
/** A second destination network on the internet host (outside a policy's destinations, or excluded). */
export const OTHER_IP = '198.51.100.10';

export interface PodNs {
  /** Kubernetes name (namespace/name are chosen by the caller). */
  name: string;
  ns: string;
  ip: string;
  node: string;
  /** The node-side veth. */
  veth: string;
}

export interface PodNet {
  internet: { ns: string; ip: string; otherIp: string };
  pods: PodNs[];
  /** Pod CIDR of each node by node name. */
  podCIDRs: Map<string, string>;
}

function nodeIndex(n: NetNode): number {
  return Number(/(\d+)$/.exec(n.name)?.[1]);
}

/**
 * Sets a node's uplink (eth0) down or up. Setting a link down makes the kernel drop its routes and IPv6
 * addresses; on up they are put back, as a node's network manager would, so the node works again.
 */
export async function setUplink(lab: Network, podNet: PodNet, n: NetNode, state: 'up' | 'down'): Promise<void> {
  await lab.setLink(n.ns, 'eth0', state);
  if (state === 'down') return;
  await lab.ip(n.ns, ['addr', 'replace', `${n.ip6}/64`, 'dev', 'eth0', 'nodad']);
  await lab.ip(n.ns, ['route', 'replace', 'default', 'via', ROUTER_IP]);
  for (const other of lab.nodes) {
    if (other !== n) await lab.ip(n.ns, ['route', 'replace', podNet.podCIDRs.get(other.name)!, 'via', other.ip]);
  }
}

/** Adds the internet host, pod CIDRs and routes on every node, and `podsPerNode[name]` pods. */
export async function addPodNet(lab: Network, podsPerNode: Readonly<Record<string, number>>): Promise<PodNet> {
  const inet = await lab.addNamespace('inet');
  await lab.addVeth(inet, 'eth0', lab.router.ns, 'up0');
  await lab.ip(inet, ['addr', 'add', `${INTERNET_IP}/24`, 'dev', 'eth0']);
  await lab.ip(inet, ['addr', 'add', `${OTHER_IP}/24`, 'dev', 'eth0']);
  await lab.ip(inet, ['route', 'add', 'default', 'via', '203.0.113.1']);
  await lab.ip(lab.router.ns, ['addr', 'add', '203.0.113.1/24', 'dev', 'up0']);
  await lab.ip(lab.router.ns, ['addr', 'add', '198.51.100.1/24', 'dev', 'up0']);
  await lab.exec(lab.router.ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);

  const podCIDRs = new Map<string, string>();
  for (const n of lab.nodes) podCIDRs.set(n.name, `198.18.${16 + nodeIndex(n)}.0/24`);
  for (const n of lab.nodes) {
    await lab.exec(n.ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1']);
    for (const other of lab.nodes) {
      if (other !== n) await lab.ip(n.ns, ['route', 'add', podCIDRs.get(other.name)!, 'via', other.ip]);
    }
    await lab.exec(n.ns, 'nft', ['add table ip podnet']);
    await lab.exec(n.ns, 'nft', ['add chain ip podnet postrouting { type nat hook postrouting priority srcnat; }']);
    await lab.exec(n.ns, 'nft', [`add rule ip podnet postrouting ip saddr ${POD_CIDR} ip daddr != { ${POD_CIDR}, ${SERVICE_CIDR} } masquerade`]);
  }

  const pods: PodNs[] = [];
  for (const n of lab.nodes) {
    const k = nodeIndex(n);
    for (let j = 1; j <= (podsPerNode[n.name] ?? 0); j++) {
      const name = `p${k}-${j}`;
      const ns = await lab.addNamespace(name);
      const veth = `vp${j}`;
      await lab.addVeth(ns, 'eth0', n.ns, veth);
      const ip = `198.18.${16 + k}.${10 + j}`;
      await lab.ip(ns, ['addr', 'add', `${ip}/32`, 'dev', 'eth0']);
      await lab.ip(ns, ['route', 'add', '169.254.1.1', 'dev', 'eth0']);
      await lab.ip(ns, ['route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
      await lab.exec(n.ns, 'sysctl', ['-qw', `net.ipv4.conf.${veth}.proxy_arp=1`]);
      await lab.ip(n.ns, ['route', 'add', `${ip}/32`, 'dev', veth]);
      pods.push({ name, ns, ip, node: n.name, veth });
    }
  }
  return { internet: { ns: inet, ip: INTERNET_IP, otherIp: OTHER_IP }, pods, podCIDRs };
}
