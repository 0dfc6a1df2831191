// Agent flags and the timing invariant that makes fencing safe (design §6, §10; src/api/fencing.ts).
//
// The kernel switch for a VIP closes at S + fence-after, S being the send time of the last renewal the
// API server accepted; the controller declares the node dead at O + lease-duration, O being when it
// observed that renewal (S ≤ O). So the switch is closed before the controller can elect another node
// when
//     fence-after + FENCE_MARGIN_MS ≤ lease-duration            (safety: refused otherwise)
// for kill -9, SIGSTOP and an API cut alike. The renew interval does not enter it; it bounds liveness:
//     renew-interval < fence-after                               (refused otherwise: the switch would
//                                                                 close before the next answer can come)
// and, not refused but shown by --help and the docs, renew-interval + API latency spike < fence-after
// (or a slow answer fences a healthy node) and renew-interval + spike < lease-duration (or the
// controller fails over a healthy one). The VIP's address lifetime is the second line of defence (it
// works without nftables, in whole seconds) and only needs refresh-interval < address-lifetime.

import { DEFAULT_NAMESPACE, AGENT_PROBE_PORT } from '../api/names.ts';
import { FENCE_MARGIN_MS } from '../api/fencing.ts';

export interface AgentOptions {
  nodeName: string;
  kubeconfig: string | undefined;
  heartbeatNamespace: string;
  renewIntervalMs: number;
  leaseDurationMs: number;
  addressLifetimeMs: number;
  refreshIntervalMs: number;
  fenceAfterMs: number;
  reannounceIntervalMs: number;
  metricsHost: string;
  metricsPort: number;
  logLevel: string;
  /**
   * Reference-compatible mode for comparisons (bench): no heartbeat Lease, no fencing, no kernel switch,
   * no reaction to a link going down; the VIP is refreshed for as long as the process runs. Failure
   * detection is then left to Node NotReady, as in the reference.
   */
  heartbeat: boolean;
}

export const DEFAULT_AGENT_OPTIONS: Omit<AgentOptions, 'nodeName' | 'kubeconfig'> = Object.freeze({
  heartbeatNamespace: DEFAULT_NAMESPACE,
  // Measured (README, "Failover"): a 300 ms API latency spike plus the tail of a loaded API server fits
  // in fence-after − renew-interval = 500 ms; lease − fence-after = 150 ms of margin; failover p99 < 1 s.
  renewIntervalMs: 150,
  leaseDurationMs: 800,
  addressLifetimeMs: 1000,
  refreshIntervalMs: 250,
  fenceAfterMs: 650,
  reannounceIntervalMs: 10_000,
  metricsHost: '127.0.0.1',
  metricsPort: AGENT_PROBE_PORT,
  logLevel: 'info',
  heartbeat: true,
});

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** Parses `500ms`, `2s`, `1.5s`, `1m`; a bare number is milliseconds. Returns undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) return undefined;
  const value = Number(m[1]) * (UNIT_MS[m[2] ?? 'ms'] ?? 1);
  return Number.isFinite(value) ? Math.round(value) : undefined;
}

/** `host:port`, `[v6]:port` or `:port` (all addresses). */
export function parseListenAddress(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/** Largest duration the Lease annotations carry (6 digits of milliseconds). */
const MAX_ANNOTATED_MS = 999_999;

/**
 * The timing invariant (file comment) plus what the kernel and the annotations need. Returns the
 * problems, each naming its flags; empty when the timings are safe.
 */
export function timingProblems(o: Pick<AgentOptions,
  'renewIntervalMs' | 'leaseDurationMs' | 'addressLifetimeMs' | 'refreshIntervalMs' | 'fenceAfterMs' | 'reannounceIntervalMs'>): string[] {
  const problems: string[] = [];
  const fmt = (ms: number): string => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);
  for (const [name, v] of [
    ['--renew-interval', o.renewIntervalMs], ['--lease-duration', o.leaseDurationMs], ['--address-lifetime', o.addressLifetimeMs],
    ['--refresh-interval', o.refreshIntervalMs], ['--fence-after', o.fenceAfterMs], ['--reannounce-interval', o.reannounceIntervalMs],
  ] as const) {
    if (!(v > 0)) problems.push(`${name} must be positive (got ${fmt(v)})`);
  }
  for (const [name, v] of [['--lease-duration', o.leaseDurationMs], ['--fence-after', o.fenceAfterMs]] as const) {
    if (v > MAX_ANNOTATED_MS) problems.push(`${name} must be at most ${fmt(MAX_ANNOTATED_MS)} (got ${fmt(v)})`);
  }
  if (!(o.fenceAfterMs + FENCE_MARGIN_MS <= o.leaseDurationMs)) {
    problems.push(`--fence-after (${fmt(o.fenceAfterMs)}) + ${FENCE_MARGIN_MS}ms must not exceed --lease-duration (${fmt(o.leaseDurationMs)}): ` +
      'the controller may elect another node once --lease-duration has passed since it saw this node\'s last renewal, ' +
      'and this node\'s kernel switch must be closed by then, with margin for the controller\'s watch delay');
  }
  if (!(o.renewIntervalMs < o.fenceAfterMs)) {
    problems.push(`--renew-interval (${fmt(o.renewIntervalMs)}) must be shorter than --fence-after (${fmt(o.fenceAfterMs)}), ` +
      'or the kernel switch would close before the next renewal could be answered');
  }
  if (o.addressLifetimeMs % 1000 !== 0) {
    problems.push(`--address-lifetime must be whole seconds, the kernel's valid_lft unit (got ${fmt(o.addressLifetimeMs)})`);
  }
  if (!(o.refreshIntervalMs < o.addressLifetimeMs)) {
    problems.push(`--refresh-interval (${fmt(o.refreshIntervalMs)}) must be shorter than --address-lifetime (${fmt(o.addressLifetimeMs)}), or a held VIP would blink out between refreshes`);
  }
  return problems;
}

export const AGENT_HELP = `Usage: egressgw agent --node-name NAME [flags]

Runs the node agent: renews this node's heartbeat Lease, puts the VIPs of the instances addressed to this
node on their interface (with a short kernel lifetime, refreshed while healthy), announces them with
gratuitous ARP / unsolicited NA, fences itself when it cannot renew, and reports instance status.

Flags:
  --node-name NAME             this node (default: $NODE_NAME)
  --kubeconfig FILE            kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --heartbeat-namespace NS     namespace of the heartbeat Leases (default ${DEFAULT_NAMESPACE})
  --renew-interval DUR         heartbeat renewal period (default 150ms)
  --lease-duration DUR         how long the controller trusts one renewal (default 800ms; the exact value
                               goes in an annotation, leaseDurationSeconds is rounded up)
  --fence-after DUR            the kernel switch (nftables) closes every VIP this long after the send time
                               of the last accepted renewal; then the agent drops its VIPs (default 650ms)
  --address-lifetime DUR       valid_lft/preferred_lft of a VIP, whole seconds: the second line of
                               defence (default 1s)
  --refresh-interval DUR       VIP lifetime refresh period while healthy (default 250ms)
  --reannounce-interval DUR    periodic gratuitous re-announcement (default 10s)
  --metrics-addr HOST:PORT     /healthz, /readyz, /metrics (default 127.0.0.1:${AGENT_PROBE_PORT})
  --log-level LEVEL            pino level (default info)
  --no-heartbeat               reference mode for comparisons: no Lease, no fencing, no kernel switch,
                               a VIP stays on a link that went down
Must hold (refused otherwise): fence-after + ${FENCE_MARGIN_MS}ms <= lease-duration (safety), renew-interval <
fence-after, refresh-interval < address-lifetime. Should hold: renew-interval + the longest API latency
spike to ride out < fence-after (or the node fences itself) and < lease-duration (or the controller fails
it over). The defaults ride out 300ms spikes.`;

export const AGENT_FLAGS = {
  'node-name': { type: 'string' },
  kubeconfig: { type: 'string' },
  'heartbeat-namespace': { type: 'string' },
  'renew-interval': { type: 'string' },
  'lease-duration': { type: 'string' },
  'address-lifetime': { type: 'string' },
  'refresh-interval': { type: 'string' },
  'fence-after': { type: 'string' },
  'reannounce-interval': { type: 'string' },
  'metrics-addr': { type: 'string' },
  'log-level': { type: 'string' },
  'no-heartbeat': { type: 'boolean' },
} as const;

export type AgentFlagValues = { [K in keyof typeof AGENT_FLAGS]?: (typeof AGENT_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

/** Turns parsed flag values (+ environment) into options, or throws an Error whose message names the flag. */
export function buildAgentOptions(values: AgentFlagValues, env: Record<string, string | undefined>): AgentOptions {
  const problems: string[] = [];
  const duration = (flag: keyof AgentFlagValues, dflt: number): number => {
    const raw = values[flag];
    if (raw === undefined || typeof raw !== 'string') return dflt;
    const ms = parseDuration(raw);
    if (ms === undefined) {
      problems.push(`--${flag}: "${raw}" is not a duration (e.g. 250ms, 2s)`);
      return dflt;
    }
    return ms;
  };
  const nodeName = values['node-name'] ?? env.NODE_NAME ?? '';
  if (nodeName === '') problems.push('--node-name (or $NODE_NAME) is required');
  const d = DEFAULT_AGENT_OPTIONS;
  let metricsHost = d.metricsHost;
  let metricsPort = d.metricsPort;
  if (values['metrics-addr'] !== undefined) {
    const addr = parseListenAddress(values['metrics-addr']);
    if (!addr) problems.push(`--metrics-addr: "${values['metrics-addr']}" is not HOST:PORT`);
    else ({ host: metricsHost, port: metricsPort } = addr);
  }
  const o: AgentOptions = {
    nodeName,
    kubeconfig: values.kubeconfig ?? env.KUBECONFIG,
    heartbeatNamespace: values['heartbeat-namespace'] ?? d.heartbeatNamespace,
    renewIntervalMs: duration('renew-interval', d.renewIntervalMs),
    leaseDurationMs: duration('lease-duration', d.leaseDurationMs),
    addressLifetimeMs: duration('address-lifetime', d.addressLifetimeMs),
    refreshIntervalMs: duration('refresh-interval', d.refreshIntervalMs),
    fenceAfterMs: duration('fence-after', d.fenceAfterMs),
    reannounceIntervalMs: duration('reannounce-interval', d.reannounceIntervalMs),
    metricsHost,
    metricsPort,
    logLevel: values['log-level'] ?? d.logLevel,
    heartbeat: values['no-heartbeat'] !== true,
  };
  problems.push(...timingProblems(o));
  if (problems.length > 0) throw new Error(problems.join('; '));
  return o;
}
