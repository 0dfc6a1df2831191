// The Linux data plane's bench (`npm run bench -- --only dataplane`): hard failovers with traffic and
// throughput in the netns cluster (dataplane-failover.ts), and the cost of its rules on one node at
// 10,000 pods / 1,000 policies (dataplane-cost.ts). Writes bench/results/dataplane.json and returns the
// tables; targets are reported, not asserted.

import os from 'node:os';
import { runDataplaneCostBench, type DataplaneCostResults } from './dataplane-cost.ts';
import { runDataplaneFailoverBench, type DataplaneFailoverResults, type FailureKind } from './dataplane-failover.ts';
import { median, renderTable, type Dist } from './stats.ts';

export interface DataplaneBenchResults {
  when: string;
  machine: { cpus: number; loadAvgStart: number[]; loadAvgEnd: number[] };
  failover: DataplaneFailoverResults;
  cost: DataplaneCostResults;
  targets: { throughputRatio: number; throughputMet: boolean };
}

export const THROUGHPUT_TARGET = 0.9;

export async function runDataplaneBench(o: { rounds: number; quick: boolean; log: (l: string) => void }): Promise<DataplaneBenchResults> {
  const loadAvgStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const failover = await runDataplaneFailoverBench({ rounds: o.rounds, log: o.log });
  const cost = await runDataplaneCostBench(o.quick ? { pods: 1000, policies: 100, gateways: 10, updates: 5, log: o.log } : { log: o.log });
  return {
    when: new Date().toISOString(),
    machine: { cpus: os.cpus().length, loadAvgStart, loadAvgEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    failover,
    cost,
    targets: { throughputRatio: THROUGHPUT_TARGET, throughputMet: failover.throughput.ratio >= THROUGHPUT_TARGET },
  };
}

const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(0)} ms` : '-');
const gbps = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(', ');
const p = (d: Dist): string => `${ms(d.p50)} / ${ms(d.p99)}`;
const KIND: Record<FailureKind, string> = { 'agent-sigkill': 'agent SIGKILL on the active node', 'uplink-down': 'active node\'s uplink down' };

export function dataplaneTables(r: DataplaneBenchResults): string {
  const f = r.failover;
  const c = r.cost;
  const t = f.throughput;
  return [
    `Linux data plane: ${r.machine.cpus} CPUs, load average ${r.machine.loadAvgStart[0]} → ${r.machine.loadAvgEnd[0]}`,
    '',
    renderTable(
      ['hard failover (rounds)', 'loss window p50 / p99', 'failure → routes at the new node p50 / p99', 'object seen → routes p50 / p99', 'TCP connections surviving', 'lost on an SNAT port clash / other', 'their 10th echo again p50 / p99', 'datagrams not from the VIP'],
      (Object.keys(f.byKind) as FailureKind[]).map((k) => {
        const b = f.byKind[k];
        const n = f.rounds.filter((x) => x.kind === k).length;
        return [`${KIND[k]} (${n})`, p(b.lossWindowMs), p(b.routeSwitchMs), p(b.objectToRoutesMs), `${(b.tcpSurvivedShare * 100).toFixed(1)} % of ${b.tcpOpen}`, `${b.tcpLost.clash} / ${b.tcpLost.other}`, p(b.tcpResumedMs), String(b.foreignSources)];
      }),
    ),
    '',
    renderTable(
      [`throughput (iperf3 TCP, ${t.tunnelGbps.length} runs each, in turn)`, 'Gbit/s (median)', 'runs', 'target', ''],
      [
        ['pod → internet through tunnel + SNAT', median(t.tunnelGbps).toFixed(2), gbps(t.tunnelGbps), '', ''],
        ['pod → internet routed directly', median(t.directGbps).toFixed(2), gbps(t.directGbps), '', ''],
        ['pod → internet routed through the gateway node, no tunnel, no SNAT', median(t.viaGatewayGbps).toFixed(2), gbps(t.viaGatewayGbps), '', ''],
        ['ratio tunnel + SNAT / direct', t.ratio.toFixed(2), '', `≥ ${THROUGHPUT_TARGET}`, t.ratio >= THROUGHPUT_TARGET ? 'ok' : 'MISSED'],
        ['ratio tunnel + SNAT / same hops without them', t.ratioSameHops.toFixed(2), '', '', ''],
      ],
    ),
    '',
    renderTable(
      [`rules on one node: ${c.pods} pods, ${c.policies} policies, ${c.gateways} gateways (${c.classes} classes)`, 'p50', 'p99'],
      [
        ['model + render (pure, per change)', ms(c.computeMs.p50), ms(c.computeMs.p99)],
        ['first apply (device, routes, rules, table)', ms(c.firstApplyMs), ''],
        ['update: one pod added (whole apply)', ms(c.updateMs.p50), ms(c.updateMs.p99)],
        ['  of which the nft transaction', ms(c.updateNftMs.p50), ms(c.updateNftMs.p99)],
        ['ruleset: nft script / `nft list table` / set elements', `${(c.scriptBytes / 1024).toFixed(0)} KiB / ${(c.listedBytes / 1024).toFixed(0)} KiB / ${c.setElements}`, ''],
      ],
    ),
  ].join('\n');
}
