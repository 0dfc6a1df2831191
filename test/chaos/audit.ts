// What the test API server's audit log says about a round (the server's own record of every request,
// in the order it received them, on one clock): which controller replica held the leader Lease when it
// wrote, when each agent's heartbeat renewal was accepted, and when each gateway instance existed.
// The readers are pure functions of the events; AuditTail reads the log incrementally.

import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import type { AuditEvent } from '../../src/testenv/apiserver.ts';

const WRITE_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

/** When the server received the request (ms since the epoch). */
export function receivedAt(e: AuditEvent): number {
  return Date.parse(e.requestReceivedTimestamp ?? e.stageTimestamp ?? '');
}

const succeeded = (e: AuditEvent): boolean => (e.responseStatus?.code ?? 0) >= 200 && (e.responseStatus?.code ?? 0) < 300;
const isWrite = (e: AuditEvent): boolean => WRITE_VERBS.has(e.verb);

/**
 * Reads an audit log from where the last read stopped, across rotations (tail -F): the API server's log
 * backend rotates the file at 100 MB (lumberjack renames it and opens a new one), and what it wrote to the
 * old file after our last read is still there. So the tail keeps the file it is reading open, drains it to
 * its end, and only then moves to the file now at the path. Found by chaos linux seed 20261225 round 242:
 * reading the new file only lost the old file's last 5 s, every node's renewals in them, and the oracle saw
 * three nodes answering "after their fence".
 */
export class AuditTail {
  readonly #path: string;
  #fd: number | undefined;
  #ino = -1;
  #offset = 0;
  #partial = '';

  constructor(path: string) {
    this.#path = path;
  }

  /** Complete events written since the last call (only ResponseComplete: one per request). */
  read(): AuditEvent[] {
    const out: AuditEvent[] = [];
    // A rotation between two reads, and another if it happened again meanwhile: a few files at most.
    for (let files = 0; files < 8; files++) {
      if (this.#fd === undefined && !this.#open()) break;
      this.#parse(this.#drain(), out);
      let now: number;
      try {
        now = statSync(this.#path).ino;
      } catch {
        break; // between the rename and the new file: read it next time
      }
      if (now === this.#ino) break;
      this.close(); // rotated: the old file is drained, the new one is read from its start
    }
    return out;
  }

  /** Complete lines of `text` (after what the last read left incomplete), parsed into `out`. */
  #parse(text: string, out: AuditEvent[]): void {
    const lines = (this.#partial + text).split('\n');
    this.#partial = lines.pop() ?? '';
    for (const l of lines) {
      if (l.trim() === '') continue;
      try {
        const e = JSON.parse(l) as AuditEvent;
        if (e.stage === 'ResponseComplete') out.push(e);
      } catch {
        // a torn line at a restart: nothing to learn from it
      }
    }
  }

  /** Lets go of the file being read (the next read opens the file at the path). */
  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #open(): boolean {
    try {
      this.#fd = openSync(this.#path, 'r');
    } catch {
      return false;
    }
    this.#ino = fstatSync(this.#fd).ino;
    this.#offset = 0;
    // A line torn at the old file's end is not continued by the new file's start.
    this.#partial = '';
    return true;
  }

  /** Everything from the last offset to the open file's end (from its start if it was truncated). */
  #drain(): string {
    const fd = this.#fd as number;
    const size = fstatSync(fd).size;
    if (size < this.#offset) {
      this.#offset = 0;
      this.#partial = '';
    }
    if (size === this.#offset) return '';
    const buf = Buffer.alloc(size - this.#offset);
    const n = readSync(fd, buf, 0, buf.length, this.#offset);
    this.#offset += n;
    return buf.subarray(0, n).toString('utf8');
  }
}

export interface LeaderWrite {
  at: number;
  user: string;
  /** Holder of the leader Lease at that moment, by the log ('' before anyone took it). */
  holder: string;
  what: string;
}

/**
 * Writes of controller replicas while another replica held the leader Lease. The holder is the replica
 * whose write to the Lease the server accepted last (a candidate's write succeeds only when it takes
 * or renews the Lease). `state.holder` carries over from the previous call.
 */
export function writesByNonLeaders(events: readonly AuditEvent[], controllerUsers: ReadonlySet<string>, lease: { namespace: string; name: string }, state: { holder: string }): LeaderWrite[] {
  const out: LeaderWrite[] = [];
  for (const e of [...events].sort((a, b) => receivedAt(a) - receivedAt(b))) {
    const user = e.user.username;
    if (!controllerUsers.has(user) || !isWrite(e) || !succeeded(e)) continue;
    const ref = e.objectRef ?? {};
    if (ref.resource === 'leases' && ref.namespace === lease.namespace && ref.name === lease.name) {
      state.holder = user;
      continue;
    }
    if (user !== state.holder) {
      out.push({ at: receivedAt(e), user, holder: state.holder, what: `${e.verb} ${ref.resource ?? '?'}${ref.subresource ? '/' + ref.subresource : ''} ${ref.namespace ? ref.namespace + '/' : ''}${ref.name ?? ''}` });
    }
  }
  return out;
}

/** When the server accepted each heartbeat renewal, by node (a successful write to the node's Lease). */
export function acceptedRenewals(events: readonly AuditEvent[], namespace: string, nodeOfLease: (name: string) => string | undefined): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const e of events) {
    const ref = e.objectRef ?? {};
    if (ref.resource !== 'leases' || ref.namespace !== namespace || !isWrite(e) || !succeeded(e) || e.verb === 'delete') continue;
    const node = nodeOfLease(ref.name ?? '');
    if (node === undefined) continue;
    const list = out.get(node) ?? [];
    list.push(receivedAt(e));
    out.set(node, list);
  }
  for (const l of out.values()) l.sort((a, b) => a - b);
  return out;
}

/** An instance's life: from its creation to its deletion (Infinity while it lives), by instance name. */
export interface Lifetime {
  from: number;
  to: number;
}

/**
 * Instance lifetimes from creations and deletions the server accepted, continuing `open` (instances alive
 * at the start, name → creation time; updated in place). A deletion ends the instance for its node even
 * while a finalizer keeps the object: the agent must withdraw from then on.
 */
export function instanceLifetimes(events: readonly AuditEvent[], resource: string, open: Map<string, number>): Map<string, Lifetime[]> {
  const out = new Map<string, Lifetime[]>();
  const add = (name: string, l: Lifetime) => {
    const list = out.get(name) ?? [];
    list.push(l);
    out.set(name, list);
  };
  for (const e of [...events].sort((a, b) => receivedAt(a) - receivedAt(b))) {
    const ref = e.objectRef ?? {};
    if (ref.resource !== resource || ref.subresource || !succeeded(e) || ref.name === undefined) continue;
    if (e.verb === 'create') {
      if (!open.has(ref.name)) open.set(ref.name, receivedAt(e));
    } else if (e.verb === 'delete') {
      const from = open.get(ref.name);
      if (from !== undefined) {
        open.delete(ref.name);
        add(ref.name, { from, to: Date.parse(e.stageTimestamp ?? '') || receivedAt(e) });
      }
    }
  }
  for (const [name, from] of open) add(name, { from, to: Infinity });
  return out;
}
