// Our labels on one node (the Node and its CiliumNode): `member` on the Ready, uncordoned nodes some
// valid gateway selects (the agent DaemonSet selects on it), and `active-for-<G>` on G's active node.
// A node's labels depend on every gateway's plan; combine.ts (whole) and the shell (incrementally)
// gather those contributions into NodeInputs, and `planNode` decides the labels and their writes.

import { ACTIVE_FOR_PREFIX, MEMBER_LABEL } from '../api/names.ts';
import type { Write } from './types.ts';
import { isMemberCandidate, type NodeState } from './eligibility.ts';
import { byString, labelsOf } from './util.ts';

export interface NodeInputs {
  name: string;
  /** Undefined when there is no Node of this name (then it carries nothing of ours). */
  state: NodeState | undefined;
  ciliumNode: { metadata?: unknown } | undefined;
  /** Some valid gateway selects this node. */
  selected: boolean;
  /** The active-for label keys of the gateways active on this node, in gateway name order. */
  active: readonly string[];
}

export interface NodePlan {
  readonly name: string;
  /** Our label keys the node must carry (member first, then active-for in gateway order); empty: none. */
  readonly labels: readonly string[];
  /** addLabels / removeLabels of the Node and of the CiliumNode (each at most one). */
  readonly writes: { readonly node: readonly Write[]; readonly ciliumNode: readonly Write[] };
}

const isOurLabel = (k: string): boolean => k === MEMBER_LABEL || k.startsWith(ACTIVE_FOR_PREFIX);
const NO_WRITES: NodePlan['writes'] = Object.freeze({ node: [], ciliumNode: [] });
/** Most nodes carry just the member label: one shared list for them. */
const MEMBER_ONLY: readonly string[] = Object.freeze([MEMBER_LABEL]);
const NONE: readonly string[] = Object.freeze([]);

function labelWrites(target: 'Node' | 'CiliumNode', name: string, labels: Readonly<Record<string, string>>, want: readonly string[]): Write[] {
  const add = want.filter((k) => labels[k] !== '');
  const remove: string[] = [];
  for (const k in labels) if (isOurLabel(k) && !want.includes(k)) remove.push(k);
  const out: Write[] = [];
  if (add.length > 0) out.push({ kind: 'addLabels', target, name, keys: add.sort(byString) });
  if (remove.length > 0) out.push({ kind: 'removeLabels', target, name, keys: remove.sort(byString) });
  return out;
}

export function planNode(inputs: NodeInputs): NodePlan {
  const { name, state } = inputs;
  const member = state !== undefined && inputs.selected && isMemberCandidate(state);
  const active = state !== undefined ? inputs.active : NONE;
  const labels = !member ? active : active.length === 0 ? MEMBER_ONLY : [MEMBER_LABEL, ...active];
  const node = state ? labelWrites('Node', name, state.labels, labels) : [];
  const ciliumNode = inputs.ciliumNode ? labelWrites('CiliumNode', name, labelsOf(inputs.ciliumNode), labels) : [];
  return { name, labels, writes: node.length + ciliumNode.length === 0 ? NO_WRITES : { node, ciliumNode } };
}
