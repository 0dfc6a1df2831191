// `egressgw plan`: offline. Manifests in; the controller's decisions (eligibility per node and gateway,
// election) and the writes it would make out. It runs the controller's own pure core on a Snapshot built
// the way the controller builds it, so what it prints is what the controller would do.

import { stringify } from 'yaml';
import { reconcile } from '../core/index.ts';
import { DEFAULT_CORE_OPTIONS, type CoreOptions } from '../core/types.ts';
import { parseDuration } from '../controller/options.ts';
import { UsageError, parseFlags } from '../term/errors.ts';
import { planReport } from './plan-report.ts';
import { DEFAULT_AGENT_LOCATION, readObjectFiles, snapshotFromObjects, type AgentLocation } from './snapshot-input.ts';
import { parseOutput } from './status.ts';

const HELP = `Usage: egressgw plan -f DIR|FILE [-f …] [flags]

Offline: reads manifests (Nodes, Pods, CiliumNodes, Leases, EgressGateways, EgressGatewayPolicies,
SDNInternalEgressGatewayInstances, CiliumEgressGatewayPolicies; multi-document YAML, JSON and kind: List
are fine; directories are searched recursively; other kinds are ignored with a note) and prints, as the
controller would decide from them:
  - every gateway's nodes, eligible or not and why (NodeNotReady, Cordoned, CiliumAgentNotReady,
    AgentMissing, HeartbeatExpired, AgentNotReady, UplinkDown, HandoverTimedOut, RefusedVIP);
  - the election (observed active node, elected node, active node after the pass);
  - the writes (labels, instances, CiliumEgressGatewayPolicies, statuses, events) and the desired objects.

Agents: a cilium-agent / egressgw agent is a Pod in the files matching the namespace and selector below
(Ready unless a Ready condition says otherwise); a heartbeat is a Lease named egressgw-agent-<node> in the
heartbeat namespace, taken as renewed just now (the controller times heartbeats on its own clock).

Flags:
  -f, --filename PATH        manifest file or directory (repeatable; positional paths work too)
  -o, --output FORMAT        yaml (default) or json
  --now TIME                 the controller's clock, RFC 3339 (default: the current time)
  --assume-agents            every Node runs a Ready cilium-agent and a Ready egressgw agent with a live
                             heartbeat, unless the files say otherwise for that node
  --no-heartbeats            ignore heartbeat Leases (as if every heartbeat had expired)
  --handover-timeout DUR     VIP handover timeout (default ${DEFAULT_CORE_OPTIONS.handoverTimeoutMs}ms)
  --cilium-namespace NS      (default ${DEFAULT_AGENT_LOCATION.ciliumNamespace})
  --cilium-selector SEL      (default ${DEFAULT_AGENT_LOCATION.ciliumSelector})
  --agent-namespace NS       (default ${DEFAULT_AGENT_LOCATION.agentNamespace})
  --agent-selector SEL       (default ${DEFAULT_AGENT_LOCATION.agentSelector})
  --heartbeat-namespace NS   (default ${DEFAULT_AGENT_LOCATION.heartbeatNamespace})
  -h, --help                 this help`;

export const LOCATION_FLAGS = {
  'cilium-namespace': { type: 'string' },
  'cilium-selector': { type: 'string' },
  'agent-namespace': { type: 'string' },
  'agent-selector': { type: 'string' },
  'heartbeat-namespace': { type: 'string' },
} as const;

export function locationFrom(v: { [K in keyof typeof LOCATION_FLAGS]?: string }): AgentLocation {
  const d = DEFAULT_AGENT_LOCATION;
  return {
    ciliumNamespace: v['cilium-namespace'] ?? d.ciliumNamespace,
    ciliumSelector: v['cilium-selector'] ?? d.ciliumSelector,
    agentNamespace: v['agent-namespace'] ?? d.agentNamespace,
    agentSelector: v['agent-selector'] ?? d.agentSelector,
    heartbeatNamespace: v['heartbeat-namespace'] ?? d.heartbeatNamespace,
    heartbeatDurationMs: d.heartbeatDurationMs,
  };
}

export function durationFlag(name: string, value: string | undefined, dflt: number): number {
  if (value === undefined) return dflt;
  try {
    const ms = parseDuration(value);
    if (!(ms > 0)) throw new Error('must be positive');
    return ms;
  } catch (err) {
    throw new UsageError(`--${name}: ${(err as Error).message}`);
  }
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(
    argv,
    {
      filename: { type: 'string', short: 'f', multiple: true },
      output: { type: 'string', short: 'o' },
      now: { type: 'string' },
      'assume-agents': { type: 'boolean' },
      'no-heartbeats': { type: 'boolean' },
      'handover-timeout': { type: 'string' },
      ...LOCATION_FLAGS,
    },
    HELP,
    true,
  );
  if (!parsed) return 0;
  const v = parsed.values;
  const output = parseOutput(v.output, ['yaml', 'json']);
  const paths = [...(v.filename ?? []), ...parsed.positionals];
  if (paths.length === 0) throw new UsageError(`no manifests given (-f DIR|FILE)\n\n${HELP}`);
  let now = Date.now();
  if (v.now !== undefined) {
    now = Date.parse(v.now);
    if (Number.isNaN(now)) throw new UsageError(`--now: "${v.now}" is not an RFC 3339 time (e.g. 2026-01-01T12:00:00Z)`);
  }
  const options: CoreOptions = {
    ...DEFAULT_CORE_OPTIONS,
    handoverTimeoutMs: durationFlag('handover-timeout', v['handover-timeout'], DEFAULT_CORE_OPTIONS.handoverTimeoutMs),
  };
  const { objects, ignoredKinds } = readObjectFiles(paths);
  if (ignoredKinds.length > 0) process.stderr.write(`egressgw plan: ignored kinds: ${ignoredKinds.join(', ')}\n`);
  if (objects.gateways.length === 0 && objects.policies.length === 0) {
    throw new UsageError(`no EgressGateway or EgressGatewayPolicy in ${paths.join(', ')}`);
  }
  const snapshot = snapshotFromObjects(objects, {
    now,
    location: locationFrom(v),
    noHeartbeats: v['no-heartbeats'] === true,
    assumeAgents: v['assume-agents'] === true,
  });
  const { desired, writes } = reconcile(snapshot, options);
  const report = planReport(snapshot, desired, writes);
  process.stdout.write(output === 'json' ? JSON.stringify(report, null, 2) + '\n' : stringify(report, { lineWidth: 0, aliasDuplicateObjects: false }));
  return 0;
}
