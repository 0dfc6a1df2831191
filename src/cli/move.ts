// `egressgw move GATEWAY NODE`: ask the controller for a graceful, make-before-break handover.
//
// The check runs the controller's own pure core on a live snapshot with the move request added, so the
// CLI refuses exactly what the controller would reject, with the same reason. Accepted moves are
// requested through the move-to annotation (a merge patch); the controller does the handover and clears
// the annotation, recording a Moved or MoveRejected event (it re-checks: the cluster may change meanwhile).

import { MOVE_TO_ANNOTATION } from '../api/names.ts';
import type { EgressGateway } from '../api/types.ts';
import { reconcile } from '../core/index.ts';
import { reasonText } from '../core/eligibility.ts';
import { DEFAULT_CORE_OPTIONS, type CoreOptions, type Snapshot } from '../core/types.ts';
import type { KubeClient } from '../kube/client.ts';
import { GATEWAYS, events } from '../kube/resources.ts';
import { PollTimeout, poll } from '../testenv/poll.ts';
import { UsageError, parseFlags } from '../term/errors.ts';
import { connect, liveSnapshot } from './cluster.ts';
import { LOCATION_FLAGS, durationFlag, locationFrom } from './plan.ts';

const HELP = `Usage: egressgw move GATEWAY NODE [flags]

Moves the active node of an EgressGateway to NODE without a traffic gap: in VIP mode the VIP is put and
announced on NODE before the old node lets go (make before break). Use it to drain a node for maintenance
(see docs/operations.md).

The move is checked first with the controller's own logic on the live cluster; when NODE cannot serve the
gateway (not matching its nodeSelector, NotReady, cordoned, cilium-agent or egressgw agent not Ready,
heartbeat expired, uplink down…) it is refused with the reason and exit code 2. Otherwise the request is
recorded in the annotation ${MOVE_TO_ANNOTATION} on the gateway; the controller carries it out and
removes the annotation.

Flags:
  --kubeconfig FILE          kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  --wait                     wait until NODE is the active node and the gateway is Ready
  --timeout DUR              with --wait: give up after DUR (default 30s; exit code 1)
  --cilium-namespace NS, --cilium-selector SEL, --agent-namespace NS, --agent-selector SEL,
  --heartbeat-namespace NS   where the controller looks for agents (use the controller's values)
  --handover-timeout DUR     the controller's --handover-timeout (default ${DEFAULT_CORE_OPTIONS.handoverTimeoutMs}ms)
  -h, --help                 this help

Exit codes: 0 moved (or requested, without --wait), 1 timeout or cluster error, 2 refused.`;

export interface MoveCheck {
  ok: boolean;
  /** Already the active node: nothing to do. */
  already: boolean;
  message: string;
}

/**
 * Would the controller honour "move GATEWAY to NODE" on this snapshot? Pure: runs the core on the
 * snapshot with the annotation added to the gateway.
 */
export function checkMove(snapshot: Snapshot, gateway: string, node: string, options: CoreOptions): MoveCheck {
  const gw = snapshot.gateways.find((g) => g.metadata.name === gateway);
  if (!gw) return { ok: false, already: false, message: `EgressGateway "${gateway}" not found` };
  if (!snapshot.nodes.some((n) => n.metadata.name === node)) return { ok: false, already: false, message: `node "${node}" not found` };
  const before = reconcile(snapshot, options).desired.gateways.get(gateway);
  if (before && before.active === node && before.observedActive === node) {
    return { ok: true, already: true, message: `node ${node} is already the active node of ${gateway}` };
  }
  const annotated: EgressGateway = {
    ...gw,
    metadata: { ...gw.metadata, annotations: { ...(gw.metadata.annotations ?? {}), [MOVE_TO_ANNOTATION]: node } },
  };
  const trial: Snapshot = { ...snapshot, gateways: snapshot.gateways.map((g) => (g === gw ? annotated : g)) };
  const { desired } = reconcile(trial, options);
  const decision = desired.gateways.get(gateway);
  const outcome = desired.moveRequests?.get(gateway);
  const verdict = decision?.candidates.find((c) => c.node === node);
  if (outcome?.reason === 'MoveRejected' || !decision || decision.target !== node) {
    let why = outcome?.note ?? `the controller would not elect ${node}`;
    if (!verdict) why += ` (node ${node} does not match the nodeSelector of ${gateway})`;
    else if (!verdict.eligible && !why.includes(reasonText(verdict.reasons[0]!))) why += ` (${verdict.reasons.map(reasonText).join(', ')})`;
    return { ok: false, already: false, message: why };
  }
  return { ok: true, already: false, message: `moving ${gateway} from ${decision.observedActive || 'no node'} to ${node}` };
}

interface EventLike {
  metadata: { name: string };
  regarding?: { name?: string; kind?: string };
  reason?: string;
  note?: string;
  series?: { count?: number };
}

/** MoveRejected events about the gateway, keyed by name and series count (to tell new ones from old). */
async function moveRejections(client: KubeClient, gateway: string): Promise<Map<string, string>> {
  const list = await client.list<EventLike>(events('default'));
  const out = new Map<string, string>();
  for (const e of list.items) {
    if (e.reason === 'MoveRejected' && e.regarding?.name === gateway && e.regarding.kind === 'EgressGateway') {
      out.set(`${e.metadata.name}#${e.series?.count ?? 1}`, e.note ?? '');
    }
  }
  return out;
}

/** The waits of --wait: API errors end them (the cluster's error is the answer), not retried. */
const WAIT = { intervalMs: 250, failOnError: true };
const readyOf = (g: EgressGateway): string => g.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown';

export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(
    argv,
    {
      kubeconfig: { type: 'string' },
      wait: { type: 'boolean' },
      timeout: { type: 'string' },
      'handover-timeout': { type: 'string' },
      ...LOCATION_FLAGS,
    },
    HELP,
    true,
  );
  if (!parsed) return 0;
  const [gateway, node, ...extra] = parsed.positionals;
  if (gateway === undefined || node === undefined || extra.length > 0) {
    throw new UsageError(`expected exactly two arguments, GATEWAY and NODE\n\n${HELP}`);
  }
  const v = parsed.values;
  const timeoutMs = durationFlag('timeout', v.timeout, 30_000);
  if (v.timeout !== undefined && !v.wait) throw new UsageError('--timeout only makes sense with --wait');
  const options: CoreOptions = {
    ...DEFAULT_CORE_OPTIONS,
    handoverTimeoutMs: durationFlag('handover-timeout', v['handover-timeout'], DEFAULT_CORE_OPTIONS.handoverTimeoutMs),
  };
  const client = connect(v.kubeconfig);

  const { snapshot } = await liveSnapshot(client, locationFrom(v));
  const check = checkMove(snapshot, gateway, node, options);
  if (!check.ok) throw new UsageError(`cannot move ${gateway} to ${node}: ${check.message}`);
  if (check.already) {
    process.stdout.write(`${check.message}\n`);
    return 0;
  }

  const seen = v.wait ? await moveRejections(client, gateway) : new Map<string, string>();
  await client.mergePatch(GATEWAYS, gateway, { metadata: { annotations: { [MOVE_TO_ANNOTATION]: node } } });
  process.stdout.write(`${check.message}: requested (annotation ${MOVE_TO_ANNOTATION}=${node})\n`);
  if (!v.wait) return 0;

  let last: EgressGateway | undefined;
  let outcome: 'moved' | 'cleared';
  try {
    outcome = await poll(`${gateway} to become active on ${node}`, async () => {
      last = await client.get<EgressGateway>(GATEWAYS, gateway);
      if (last.status?.activeNodeName === node && readyOf(last) === 'True') return 'moved';
      const pending = last.metadata.annotations?.[MOVE_TO_ANNOTATION] !== undefined;
      return !pending && last.status?.activeNodeName !== node ? 'cleared' : undefined;
    }, timeoutMs, WAIT);
  } catch (err) {
    if (!(err instanceof PollTimeout)) throw err;
    throw timedOut(gateway, node, timeoutMs, last);
  }
  if (outcome === 'moved') {
    process.stdout.write(`moved: ${node} is the active node of ${gateway} and the gateway is Ready\n`);
    return 0;
  }
  // The controller cleared the request without moving: it rejected it, and its event says why (the
  // event may land a moment after the annotation is removed).
  const fresh = await poll('the MoveRejected event', async () => {
    const notes = [...(await moveRejections(client, gateway))].filter(([k]) => !seen.has(k)).map(([, note]) => note);
    return notes.length > 0 ? notes : undefined;
  }, 1000, WAIT).catch((err: unknown) => {
    if (err instanceof PollTimeout) return undefined;
    throw err;
  });
  if (fresh) throw new UsageError(`the controller rejected the move: ${fresh[fresh.length - 1]}`);
  throw new UsageError(`the move request was cleared without a move; the active node is ${last?.status?.activeNodeName || 'none'}`, 1);
}

function timedOut(gateway: string, node: string, timeoutMs: number, last: EgressGateway | undefined): UsageError {
  const active = last?.status?.activeNodeName || 'none';
  const cond = last?.status?.conditions?.find((c) => c.type === 'Ready');
  return new UsageError(
    `timed out after ${timeoutMs}ms waiting for ${gateway} to become active on ${node}: active node ${active}, Ready=${cond?.status ?? 'Unknown'}` +
      (cond ? ` (${cond.reason}: ${cond.message})` : '') +
      (last?.metadata.annotations?.[MOVE_TO_ANNOTATION] !== undefined ? '; the request is still pending (is the controller running?)' : ''),
    1,
  );
}
