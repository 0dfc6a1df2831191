// Flags of `egressgw controller`, parsed with node:util parseArgs. The CLI mounts this; tests build
// options with `parseControllerArgs([...])` so defaults live in one place.

import { parseArgs } from 'node:util';
import { hostname } from 'node:os';
import { DATAPLANE_MODES, DEFAULT_AGENT_SELECTOR, DEFAULT_CILIUM_AGENT_SELECTOR, DEFAULT_CILIUM_NAMESPACE, DEFAULT_NAMESPACE, type DataplaneMode } from '../api/names.ts';
import { isLogLevel } from '../kube/log.ts';
import { validateLeaderElectionConfig, type LeaderElectionConfig } from '../kube/leader.ts';

export interface ControllerOptions {
  kubeconfig?: string;
  ciliumNamespace: string;
  ciliumSelector: string;
  agentNamespace: string;
  agentSelector: string;
  heartbeatNamespace: string;
  /** Used when a heartbeat Lease lacks leaseDurationSeconds. */
  heartbeatDurationMs: number;
  handoverTimeoutMs: number;
  leaderElect: boolean;
  leaderElectNamespace: string;
  leaderElectName: string;
  leaderElectIdentity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** `host:port`, `:port`; empty disables the HTTP server. */
  metricsAddr: string;
  resyncMs: number;
  logLevel: string;
  /**
   * cilium: render CiliumEgressGatewayPolicies (design §7). linux: render the per-gateway dataplane
   * objects for the agents' Linux data plane instead, and do not require cilium-agent pods.
   */
  dataplane: DataplaneMode;
}

export const CONTROLLER_HELP = `Usage: egressgw controller [flags]

Watches nodes, cilium and egressgw agents, heartbeat Leases, EgressGateways and EgressGatewayPolicies;
elects active nodes; writes labels, instances, CiliumEgressGatewayPolicies, statuses and events.

Flags:
  --kubeconfig PATH                   kubeconfig (default: $KUBECONFIG, else in-cluster)
  --cilium-namespace NS               namespace of cilium-agent pods (default ${DEFAULT_CILIUM_NAMESPACE}; Deckhouse: d8-cni-cilium)
  --cilium-selector SEL               label selector of cilium-agent pods (default ${DEFAULT_CILIUM_AGENT_SELECTOR};
                                      Deckhouse: app=agent,module=cni-cilium)
  --agent-namespace NS                namespace of egressgw agent pods (default ${DEFAULT_NAMESPACE})
  --agent-selector SEL                label selector of egressgw agent pods (default ${DEFAULT_AGENT_SELECTOR})
  --heartbeat-namespace NS            namespace of the agents' heartbeat Leases (default ${DEFAULT_NAMESPACE})
  --heartbeat-duration DUR            heartbeat lifetime when a Lease does not say (default 2s)
  --handover-timeout DUR              VIP handover: how long a new node may take to confirm (default 5s)
  --leader-elect, --no-leader-elect   run leader election (default true; --leader-elect=false also works)
  --leader-elect-namespace NS         namespace of the leader Lease (default: the heartbeat namespace)
  --leader-elect-name NAME            name of the leader Lease (default egressgw-controller)
  --leader-elect-identity ID          this replica's identity (default: $POD_NAME, else hostname_pid)
  --leader-elect-lease-duration DUR   (default 15s)
  --leader-elect-renew-deadline DUR   (default 10s)
  --leader-elect-retry-period DUR     (default 2s)
  --metrics-addr ADDR                 /metrics, /healthz, /readyz (default :8080; "0" or "" disables)
  --resync DUR                        periodic pass: writes again what is still not as planned (default 30s)
  --log-level LEVEL                   fatal|error|warn|info|debug|trace (default info)
  --dataplane cilium|linux            cilium (default): render CiliumEgressGatewayPolicies; linux: render the
                                      per-gateway SDNInternalEgressGatewayDataplane objects the agents program
                                      (docs/dataplane.md), and do not require cilium-agent pods

Durations: 500ms, 2s, 1m, 1m30s, or plain milliseconds.`;

/** Parse `500ms`, `2s`, `1.5s`, `1m30s`, `1h`, or a bare number of milliseconds. */
export function parseDuration(s: string): number {
  const t = s.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    total += Number(m[1]) * unit;
    pos = re.lastIndex;
  }
  if (t === '' || pos !== t.length) throw new Error(`invalid duration "${s}" (use e.g. 500ms, 2s, 1m30s)`);
  return total;
}

function parseBool(name: string, v: string | boolean | undefined, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v === 'boolean') return v;
  if (/^(true|1|yes)$/i.test(v)) return true;
  if (/^(false|0|no)$/i.test(v)) return false;
  throw new Error(`--${name}: expected true or false, got "${v}"`);
}

function validSelector(name: string, s: string): string {
  // Equality-based selectors are all we need; reject what would silently match nothing or everything.
  for (const part of s.split(',')) {
    if (!/^[A-Za-z0-9._/-]+(=|==|!=)[A-Za-z0-9._-]*$/.test(part.trim()) && !/^!?[A-Za-z0-9._/-]+$/.test(part.trim())) {
      throw new Error(`--${name}: invalid label selector "${s}"`);
    }
  }
  return s;
}

export function defaultIdentity(): string {
  return process.env.POD_NAME || `${hostname()}_${process.pid}`;
}

/**
 * Parse the controller's flags (argv without the `controller` word). Throws an Error whose message
 * names the bad flag; `--help` is the caller's to handle (see CONTROLLER_HELP).
 */
export function parseControllerArgs(argv: string[]): ControllerOptions {
  const str = { type: 'string' } as const;
  // Accept client-go's `--leader-elect=false` as well as `--no-leader-elect`.
  const args = argv.map((a) => {
    const m = /^--leader-elect=(.*)$/.exec(a);
    if (!m) return a;
    return parseBool('leader-elect', m[1], true) ? '--leader-elect' : '--no-leader-elect';
  });
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    allowNegative: true,
    options: {
      kubeconfig: str,
      'cilium-namespace': str,
      'cilium-selector': str,
      'agent-namespace': str,
      'agent-selector': str,
      'heartbeat-namespace': str,
      'heartbeat-duration': str,
      'handover-timeout': str,
      'leader-elect': { type: 'boolean' },
      'leader-elect-namespace': str,
      'leader-elect-name': str,
      'leader-elect-identity': str,
      'leader-elect-lease-duration': str,
      'leader-elect-renew-deadline': str,
      'leader-elect-retry-period': str,
      'metrics-addr': str,
      resync: str,
      'log-level': str,
      dataplane: str,
    },
  });
  const dur = (name: keyof typeof values, dflt: string): number => {
    const v = values[name];
    try {
      const ms = parseDuration(typeof v === 'string' ? v : dflt);
      if (!(ms > 0)) throw new Error('must be positive');
      return ms;
    } catch (err) {
      throw new Error(`--${name}: ${(err as Error).message}`, { cause: err });
    }
  };
  const heartbeatNamespace = values['heartbeat-namespace'] ?? DEFAULT_NAMESPACE;
  const opts: ControllerOptions = {
    kubeconfig: values.kubeconfig,
    ciliumNamespace: values['cilium-namespace'] ?? DEFAULT_CILIUM_NAMESPACE,
    ciliumSelector: validSelector('cilium-selector', values['cilium-selector'] ?? DEFAULT_CILIUM_AGENT_SELECTOR),
    agentNamespace: values['agent-namespace'] ?? DEFAULT_NAMESPACE,
    agentSelector: validSelector('agent-selector', values['agent-selector'] ?? DEFAULT_AGENT_SELECTOR),
    heartbeatNamespace,
    heartbeatDurationMs: dur('heartbeat-duration', '2s'),
    handoverTimeoutMs: dur('handover-timeout', '5s'),
    leaderElect: values['leader-elect'] ?? true,
    leaderElectNamespace: values['leader-elect-namespace'] ?? heartbeatNamespace,
    leaderElectName: values['leader-elect-name'] ?? 'egressgw-controller',
    leaderElectIdentity: values['leader-elect-identity'] ?? defaultIdentity(),
    leaseDurationMs: dur('leader-elect-lease-duration', '15s'),
    renewDeadlineMs: dur('leader-elect-renew-deadline', '10s'),
    retryPeriodMs: dur('leader-elect-retry-period', '2s'),
    metricsAddr: values['metrics-addr'] ?? ':8080',
    resyncMs: dur('resync', '30s'),
    logLevel: values['log-level'] ?? 'info',
    dataplane: (values.dataplane ?? 'cilium') as DataplaneMode,
  };
  if (!DATAPLANE_MODES.includes(opts.dataplane)) throw new Error(`--dataplane: "${opts.dataplane}" is not one of ${DATAPLANE_MODES.join(', ')}`);
  if (!isLogLevel(opts.logLevel)) throw new Error(`--log-level: unknown level "${opts.logLevel}"`);
  if (opts.leaderElect) validateLeaderElectionConfig(leaderElectionConfig(opts));
  parseListenAddr(opts.metricsAddr);
  return opts;
}

/** The leader-election settings among the controller's options (validated by parseControllerArgs). */
export function leaderElectionConfig(opts: ControllerOptions): LeaderElectionConfig {
  return {
    namespace: opts.leaderElectNamespace,
    name: opts.leaderElectName,
    identity: opts.leaderElectIdentity,
    leaseDurationMs: opts.leaseDurationMs,
    renewDeadlineMs: opts.renewDeadlineMs,
    retryPeriodMs: opts.retryPeriodMs,
  };
}

/** `:8080` → all interfaces; `127.0.0.1:0` → an ephemeral port; '' or '0' → disabled (undefined). */
export function parseListenAddr(addr: string): { host?: string; port: number } | undefined {
  if (addr === '' || addr === '0') return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!m) throw new Error(`--metrics-addr: expected [host]:port, got "${addr}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--metrics-addr: port out of range in "${addr}"`);
  const host = m[1] ?? m[2];
  return { host: host ? host : undefined, port };
}
