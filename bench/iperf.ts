// iperf3 between the netns rig's pods and its internet host, for the data plane benches
// (dataplane-failover.ts in the full cluster, dataplane-throughput.ts in a two-node rig).

import { spawn } from 'node:child_process';
import type { Network, NetNode } from '../src/testenv/netns.ts';
import type { PodNet, PodNs } from '../src/testenv/podnet.ts';
import { freshPort } from '../src/testenv/traffic.ts';

const VIA_GATEWAY_TABLE = '190';

/**
 * Routes one pod's traffic to the internet host by `route` (`ip route` arguments without the destination,
 * e.g. `via <gw>` or `encap ip id 42 dst <gw> dev egw0`): an ip rule in the worker and a table of the
 * bench's own, so the pod's other routes and the node's stay as they are.
 */
export function podRoute(net: Network, podNet: PodNet, worker: NetNode, pod: PodNs, route: string[]) {
  const rule = ['rule', '%', 'priority', '1900', 'from', pod.ip, 'to', podNet.internet.ip, 'lookup', VIA_GATEWAY_TABLE];
  const set = (verb: 'add' | 'del') => rule.map((x) => (x === '%' ? verb : x));
  return {
    async on() {
      await net.ip(worker.ns, ['route', 'replace', 'default', ...route, 'table', VIA_GATEWAY_TABLE]);
      await net.ip(worker.ns, set('add'));
    },
    async off() {
      await net.ip(worker.ns, set('del'));
      await net.ip(worker.ns, ['route', 'flush', 'table', VIA_GATEWAY_TABLE]);
    },
  };
}

/**
 * Routes one pod's traffic to the internet host through `gw` as a plain next hop (podRoute; the worker's
 * CNI masquerade still applies, the gateway node only forwards). The gateway node does not send ICMP
 * redirects for it (in and out through the same interface).
 */
export function viaGatewayRoute(net: Network, podNet: PodNet, worker: NetNode, pod: PodNs, gw: NetNode) {
  const r = podRoute(net, podNet, worker, pod, ['via', gw.ip]);
  return {
    async on() {
      await net.exec(gw.ns, 'sysctl', ['-qw', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.eth0.send_redirects=0']);
      await r.on();
    },
    off: r.off,
  };
}

/** One iperf3 TCP run from a pod to the internet host: Gbit/s received. */
export async function iperf(net: Network, podNet: PodNet, from: PodNs, seconds: number): Promise<number> {
  const port = freshPort();
  const server = net.spawnIn(podNet.internet.ns, 'iperf3', ['-s', '-1', '--forceflush', '-p', String(port)]);
  try {
    await new Promise<void>((resolve, reject) => {
      let text = '';
      server.stdout!.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.includes('Server listening')) resolve();
      });
      server.once('exit', (code) => reject(new Error(`iperf3 server exited ${code}`)));
    });
    const out = await new Promise<string>((resolve, reject) => {
      const c = spawn('ip', ['netns', 'exec', from.ns, 'iperf3', '-c', podNet.internet.ip, '-p', String(port), '-t', String(seconds), '-J']);
      let text = '';
      c.stdout.on('data', (d: Buffer) => (text += d.toString()));
      c.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`iperf3 client exited ${code}: ${text.slice(0, 300)}`))));
    });
    const j = JSON.parse(out) as { end?: { sum_received?: { bits_per_second?: number } } };
    return (j.end?.sum_received?.bits_per_second ?? 0) / 1e9;
  } finally {
    server.kill('SIGKILL');
  }
}
