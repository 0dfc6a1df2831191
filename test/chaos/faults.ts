// The faults a chaos round applies: planned from the round's generator (pure: kinds, targets, moments,
// durations), then run against the cluster, each undoing itself when its time is up.
//
//   API path (the fault proxy in front of the API server, scoped to everyone, the agents, one agent,
//   the controllers, the leader or the standby replica):
//     latency   requests and/or answers delayed by 50–800 ms
//     cut       partition: bytes held both ways, then delivered (TCP retransmits once it heals), or the
//               connections reset at the end (state lost on the way), or bytes dropped for good (a
//               black hole the connections never learn of)
//     reset     open connections reset (TCP RST), once or a few times
//     refuse    new connections reset at once
//     status    a share of requests answered 409 / 429 / 500 / 503 (500 also after the write happened)
//   Control plane:
//     apiserverRestart, etcdRestart   SIGTERM or SIGKILL, down for a while, started again (data kept)
//     etcdCompact                     compaction under the open watches: every watch gets 410 Gone
//     apiserverStop, etcdStop         SIGSTOP for a while, then SIGCONT
//   Processes:
//     agentKill                       kill -9 of a node's agent, restarted later (a DaemonSet would)
//     agentStop                       SIGSTOP of a node's agent for 0.2–3 s (shorter and longer than its lease)
//     controllerKill, controllerTerm  kill -9 or SIGTERM of the leader or the standby (restarted by the supervisor)
//     controllerStop                  SIGSTOP of a replica for 0.5–20 s (longer than the leader lease: a new
//                                     leader, and the old one wakes up believing it leads)
//   Network:
//     uplinkDown                      a node's LAN link down for a while

import type { FaultDirection, FaultRule, FaultVerbs } from '../../src/testenv/faultproxy.ts';
import type { Rng } from './rng.ts';

export type Scope =
  | { to: 'all' }
  | { to: 'agents' }
  | { to: 'agent'; node: string }
  | { to: 'controllers' }
  | { to: 'controller'; which: 'leader' | 'standby' };

interface Timed {
  /** Start, ms after the round's fault phase began. */
  at: number;
}
interface Lasting extends Timed {
  durationMs: number;
}

export type FaultPlan =
  | ({ kind: 'latency'; scope: Scope; ms: number; direction: FaultDirection } & Lasting)
  | ({ kind: 'cut'; scope: Scope; end: 'deliver' | 'reset' | 'drop' } & Lasting)
  | ({ kind: 'reset'; scope: Scope; times: number; everyMs: number } & Timed)
  | ({ kind: 'refuse'; scope: Scope } & Lasting)
  | ({ kind: 'status'; scope: Scope; code: number; share: number; verbs: FaultVerbs; committed: boolean } & Lasting)
  | ({ kind: 'apiserverRestart' | 'etcdRestart'; kill: boolean; downMs: number } & Timed)
  | ({ kind: 'etcdCompact' } & Timed)
  | ({ kind: 'apiserverStop' | 'etcdStop' } & Lasting)
  | ({ kind: 'agentKill'; node: string; restartAfterMs: number } & Timed)
  | ({ kind: 'agentStop'; node: string } & Lasting)
  | ({ kind: 'controllerKill' | 'controllerTerm'; which: 'leader' | 'standby' } & Timed)
  | ({ kind: 'controllerStop'; which: 'leader' | 'standby' } & Lasting)
  | ({ kind: 'uplinkDown'; node: string } & Lasting);

export type FaultKind = FaultPlan['kind'];

/** How often each kind is drawn (relative). */
const WEIGHTS: ReadonlyArray<[FaultKind, number]> = [
  ['latency', 3], ['cut', 2], ['reset', 2], ['refuse', 1], ['status', 3],
  ['apiserverRestart', 1], ['etcdRestart', 1], ['etcdCompact', 1], ['apiserverStop', 1], ['etcdStop', 1],
  ['agentKill', 2], ['agentStop', 2], ['controllerKill', 2], ['controllerTerm', 1], ['controllerStop', 1],
  ['uplinkDown', 1],
];

export const FAULT_KINDS: readonly FaultKind[] = WEIGHTS.map(([k]) => k);
const CONTROL_PLANE = new Set<FaultKind>(['apiserverRestart', 'etcdRestart', 'etcdCompact', 'apiserverStop', 'etcdStop']);

function weightedKind(rng: Rng, only?: readonly FaultKind[]): FaultKind {
  const pool = only ? WEIGHTS.filter(([k]) => only.includes(k)) : WEIGHTS;
  const total = pool.reduce((a, [, w]) => a + w, 0);
  let x = rng.float() * total;
  for (const [k, w] of pool) {
    x -= w;
    if (x < 0) return k;
  }
  return pool[pool.length - 1]![0];
}

function randomScope(rng: Rng, nodes: readonly string[]): Scope {
  const to = rng.pick(['all', 'agents', 'agent', 'agent', 'controllers', 'controller', 'controller'] as const);
  if (to === 'agent') return { to, node: rng.pick(nodes) };
  if (to === 'controller') return { to, which: rng.chance(0.7) ? 'leader' : 'standby' };
  return { to };
}

/**
 * 1–3 faults (`count`) in a window of `windowMs`: each starts in its first 60 % and (when it lasts) ends
 * by its end, except a frozen controller, which may outlast it (the round then waits for it).
 */
export function planFaults(rng: Rng, count: number, windowMs: number, nodes: readonly string[], only?: readonly FaultKind[]): FaultPlan[] {
  const out: FaultPlan[] = [];
  for (let i = 0; i < count; i++) {
    let kind = weightedKind(rng, only);
    // One control-plane fault per round: a restart of a process another fault has frozen tells nothing new.
    if (CONTROL_PLANE.has(kind) && out.some((f) => CONTROL_PLANE.has(f.kind))) {
      const rest = (only ?? FAULT_KINDS).filter((k) => !CONTROL_PLANE.has(k));
      if (rest.length === 0) continue;
      kind = weightedKind(rng, rest);
    }
    const at = rng.int(0, Math.floor(windowMs * 0.6));
    const lasting = () => rng.int(300, Math.max(300, windowMs - at));
    switch (kind) {
      case 'latency':
        out.push({ kind, at, durationMs: lasting(), scope: randomScope(rng, nodes), ms: rng.pick([50, 150, 300, 500, 800]), direction: rng.pick(['toServer', 'toClient', 'both'] as const) });
        break;
      case 'cut':
        out.push({ kind, at, durationMs: lasting(), scope: randomScope(rng, nodes), end: rng.pick(['deliver', 'deliver', 'reset', 'reset', 'drop'] as const) });
        break;
      case 'refuse':
        out.push({ kind, at, durationMs: lasting(), scope: randomScope(rng, nodes) });
        break;
      case 'reset':
        out.push({ kind, at, scope: randomScope(rng, nodes), times: rng.int(1, 4), everyMs: rng.int(100, 1500) });
        break;
      case 'status': {
        const code = rng.pick([409, 429, 500, 503]);
        out.push({ kind, at, durationMs: lasting(), scope: randomScope(rng, nodes), code, share: rng.pick([0.1, 0.25, 0.5, 0.9]), verbs: rng.pick(['read', 'write', 'any'] as const), committed: code === 500 && rng.chance(0.5) });
        break;
      }
      case 'apiserverRestart':
      case 'etcdRestart':
        out.push({ kind, at, kill: rng.chance(0.5), downMs: rng.pick([0, 200, 1000, 3000]) });
        break;
      case 'etcdCompact':
        out.push({ kind, at });
        break;
      case 'apiserverStop':
      case 'etcdStop':
        out.push({ kind, at, durationMs: rng.int(200, 5000) });
        break;
      case 'agentKill':
        out.push({ kind, at, node: rng.pick(nodes), restartAfterMs: rng.pick([0, 500, 2000, 5000]) });
        break;
      case 'agentStop':
        out.push({ kind, at, node: rng.pick(nodes), durationMs: rng.pick([200, 500, 1000, 2000, 3000]) });
        break;
      case 'controllerKill':
      case 'controllerTerm':
        out.push({ kind, at, which: rng.chance(0.75) ? 'leader' : 'standby' });
        break;
      case 'controllerStop':
        out.push({ kind, at, which: rng.chance(0.75) ? 'leader' : 'standby', durationMs: rng.pick([500, 3000, 8000, 20_000]) });
        break;
      case 'uplinkDown':
        out.push({ kind, at, node: rng.pick(nodes), durationMs: rng.int(300, 3000) });
        break;
    }
  }
  return out.sort((a, b) => a.at - b.at);
}

function describeScope(s: Scope): string {
  if (s.to === 'agent') return `agent of ${s.node}`;
  if (s.to === 'controller') return `${s.which} controller`;
  return s.to;
}

export function describeFault(f: FaultPlan): string {
  const at = `@${f.at}ms`;
  const d = 'durationMs' in f ? ` for ${f.durationMs}ms` : '';
  switch (f.kind) {
    case 'latency':
      return `${at} latency ${f.ms}ms ${f.direction} for ${describeScope(f.scope)}${d}`;
    case 'cut':
      return `${at} cut ${describeScope(f.scope)}${d}, then ${f.end === 'deliver' ? 'delivered' : f.end === 'reset' ? 'reset' : 'dropped'}`;
    case 'refuse':
      return `${at} ${f.kind} ${describeScope(f.scope)}${d}`;
    case 'reset':
      return `${at} reset ${describeScope(f.scope)} ×${f.times} every ${f.everyMs}ms`;
    case 'status':
      return `${at} ${f.code}${f.committed ? ' (after commit)' : ''} to ${Math.round(f.share * 100)}% of ${f.verbs} requests of ${describeScope(f.scope)}${d}`;
    case 'apiserverRestart':
    case 'etcdRestart':
      return `${at} ${f.kind} (${f.kill ? 'SIGKILL' : 'SIGTERM'}, down ${f.downMs}ms)`;
    case 'etcdCompact':
      return `${at} etcd compaction under the watches (410 Gone)`;
    case 'apiserverStop':
    case 'etcdStop':
      return `${at} ${f.kind === 'apiserverStop' ? 'API server' : 'etcd'} SIGSTOP${d}`;
    case 'agentKill':
      return `${at} kill -9 agent of ${f.node}, restarted after ${f.restartAfterMs}ms`;
    case 'agentStop':
      return `${at} SIGSTOP agent of ${f.node}${d}`;
    case 'controllerKill':
    case 'controllerTerm':
      return `${at} ${f.kind === 'controllerKill' ? 'kill -9' : 'SIGTERM'} ${f.which} controller`;
    case 'controllerStop':
      return `${at} SIGSTOP ${f.which} controller${d}`;
    case 'uplinkDown':
      return `${at} LAN link of ${f.node} down${d}`;
  }
}

/** The kind of a fault from its description (describeFault): records hold descriptions only. */
export function kindOfDescription(d: string): FaultKind | undefined {
  const rules: Array<[RegExp, FaultKind]> = [
    [/^@\d+ms latency /, 'latency'],
    [/^@\d+ms cut /, 'cut'],
    [/^@\d+ms reset .* ×\d+/, 'reset'],
    [/^@\d+ms refuse /, 'refuse'],
    [/^@\d+ms \d{3}( \(after commit\))? to /, 'status'],
    [/^@\d+ms apiserverRestart /, 'apiserverRestart'],
    [/^@\d+ms etcdRestart /, 'etcdRestart'],
    [/^@\d+ms etcd compaction/, 'etcdCompact'],
    [/^@\d+ms API server SIGSTOP/, 'apiserverStop'],
    [/^@\d+ms etcd SIGSTOP/, 'etcdStop'],
    [/^@\d+ms kill -9 agent /, 'agentKill'],
    [/^@\d+ms SIGSTOP agent /, 'agentStop'],
    [/^@\d+ms kill -9 (leader|standby) controller/, 'controllerKill'],
    [/^@\d+ms SIGTERM (leader|standby) controller/, 'controllerTerm'],
    [/^@\d+ms SIGSTOP (leader|standby) controller/, 'controllerStop'],
    [/^@\d+ms LAN link of /, 'uplinkDown'],
  ];
  return rules.find(([re]) => re.test(d))?.[1];
}

/** What running a fault needs from the cluster (cluster.ts provides it). */
export interface FaultTarget {
  /** Proxy client addresses of a scope, resolved now ('leader' and 'standby' by the leader Lease). */
  clientsOf(scope: Scope): Promise<string[] | undefined>;
  addProxyRule(rule: FaultRule): () => void;
  resetConnections(clients: string[] | undefined): void;
  restartApiServer(kill: boolean, downMs: number): Promise<void>;
  restartEtcd(kill: boolean, downMs: number): Promise<void>;
  compactEtcd(): Promise<void>;
  signalApiServer(signal: NodeJS.Signals): void;
  signalEtcd(signal: NodeJS.Signals): void;
  killAgent(node: string): Promise<void>;
  startAgent(node: string): void;
  signalAgent(node: string, signal: NodeJS.Signals): void;
  /** The replica name playing `which` now. */
  replica(which: 'leader' | 'standby'): Promise<string>;
  signalController(name: string, signal: NodeJS.Signals): void;
  setLink(node: string, state: 'up' | 'down'): Promise<void>;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

/**
 * Runs one fault from its moment to its end (an instant fault: until done). `started` is when the fault
 * phase began (Date.now()). Every fault undoes itself; heal() in the round undoes what an error left.
 */
export async function runFault(t: FaultTarget, f: FaultPlan, started: number, random: () => number): Promise<void> {
  await sleep(started + f.at - Date.now());
  const lasting = async (undo: () => void | Promise<void>) => {
    try {
      await sleep(started + f.at + (f as Lasting).durationMs - Date.now());
    } finally {
      await undo();
    }
  };
  switch (f.kind) {
    case 'latency': {
      const clients = await t.clientsOf(f.scope);
      return lasting(t.addProxyRule({ kind: 'delay', ms: f.ms, direction: f.direction, ...(clients ? { clients } : {}) }));
    }
    case 'cut': {
      const clients = await t.clientsOf(f.scope);
      const remove = t.addProxyRule({ kind: 'cut', hold: f.end !== 'drop', ...(clients ? { clients } : {}) });
      return lasting(() => {
        if (f.end === 'reset') t.resetConnections(clients);
        remove();
      });
    }
    case 'refuse': {
      const clients = await t.clientsOf(f.scope);
      const remove = t.addProxyRule({ kind: 'refuse', ...(clients ? { clients } : {}) });
      t.resetConnections(clients);
      return lasting(remove);
    }
    case 'reset': {
      const clients = await t.clientsOf(f.scope);
      for (let i = 0; i < f.times; i++) {
        if (i > 0) await sleep(f.everyMs);
        t.resetConnections(clients);
      }
      return;
    }
    case 'status': {
      const clients = await t.clientsOf(f.scope);
      return lasting(t.addProxyRule({ kind: 'status', code: f.code, share: f.share, verbs: f.verbs, committed: f.committed, random, ...(clients ? { clients } : {}) }));
    }
    case 'apiserverRestart':
      return t.restartApiServer(f.kill, f.downMs);
    case 'etcdRestart':
      return t.restartEtcd(f.kill, f.downMs);
    case 'etcdCompact':
      return t.compactEtcd();
    case 'apiserverStop':
      t.signalApiServer('SIGSTOP');
      return lasting(() => t.signalApiServer('SIGCONT'));
    case 'etcdStop':
      t.signalEtcd('SIGSTOP');
      return lasting(() => t.signalEtcd('SIGCONT'));
    case 'agentKill':
      await t.killAgent(f.node);
      await sleep(f.restartAfterMs);
      t.startAgent(f.node);
      return;
    case 'agentStop':
      t.signalAgent(f.node, 'SIGSTOP');
      return lasting(() => t.signalAgent(f.node, 'SIGCONT'));
    case 'controllerKill':
    case 'controllerTerm': {
      const name = await t.replica(f.which);
      t.signalController(name, f.kind === 'controllerKill' ? 'SIGKILL' : 'SIGTERM');
      return;
    }
    case 'controllerStop': {
      const name = await t.replica(f.which);
      t.signalController(name, 'SIGSTOP');
      return lasting(() => t.signalController(name, 'SIGCONT'));
    }
    case 'uplinkDown':
      await t.setLink(f.node, 'down');
      return lasting(() => t.setLink(f.node, 'up'));
  }
}
