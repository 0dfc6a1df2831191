// Reading the audit log of a chaos round: who held the leader Lease when a replica wrote, when
// renewals were accepted, when instances lived.
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { auditLogFiles, type AuditEvent } from '../../src/testenv/apiserver.ts';
import { AuditTail, acceptedRenewals, instanceLifetimes, writesByNonLeaders } from './audit.ts';

let clock = Date.parse('2026-12-01T00:00:00Z');
function ev(user: string, verb: string, resource: string, name: string, code = 200, namespace?: string): AuditEvent {
  clock += 10;
  const ts = new Date(clock).toISOString();
  return { verb, user: { username: user }, objectRef: { resource, name, ...(namespace ? { namespace } : {}) }, responseStatus: { code }, requestURI: '/', stage: 'ResponseComplete', requestReceivedTimestamp: ts, stageTimestamp: ts };
}
const LEASE = { namespace: 'egressgw-system', name: 'egressgw-controller' };
const users = new Set(['ctl-a', 'ctl-b']);

describe('chaos audit readers', () => {
  it('writes by the replica holding the Lease pass; a deposed replica writing is flagged', () => {
    const state = { holder: '' };
    const events = [
      ev('ctl-a', 'update', 'leases', LEASE.name, 200, LEASE.namespace),
      ev('ctl-a', 'patch', 'nodes', 'node1'),
      ev('ctl-b', 'update', 'leases', LEASE.name, 409, LEASE.namespace), // lost the race: not the holder
      ev('ctl-b', 'get', 'leases', LEASE.name, 200, LEASE.namespace),
      ev('ctl-b', 'update', 'leases', LEASE.name, 200, LEASE.namespace), // took over
      ev('ctl-b', 'create', 'sdninternalegressgatewayinstances', 'gw-1'),
      ev('ctl-a', 'patch', 'egressgateways', 'gw', 200), // the old leader writes: flagged
      ev('ctl-a', 'patch', 'egressgateways', 'gw', 409), // refused: no harm done
    ];
    const bad = writesByNonLeaders(events, users, LEASE, state);
    assert.deepEqual(bad.map((w) => [w.user, w.holder, w.what]), [['ctl-a', 'ctl-b', 'patch egressgateways gw']]);
    assert.equal(state.holder, 'ctl-b');
  });

  it('accepted renewals by node; instance lifetimes from creation to deletion, carried over', () => {
    const node = (l: string) => (l.startsWith('egressgw-node-') ? l.slice('egressgw-node-'.length) : undefined);
    const r = acceptedRenewals([ev('agent', 'update', 'leases', 'egressgw-node-n1', 200, 'ns'), ev('agent', 'update', 'leases', 'egressgw-node-n1', 409, 'ns'), ev('agent', 'update', 'leases', 'other', 200, 'ns')], 'ns', node);
    assert.deepEqual([...r.keys()], ['n1']);
    assert.equal(r.get('n1')!.length, 1);
    const open = new Map<string, number>();
    const first = instanceLifetimes([ev('c', 'create', 'inst', 'i1'), ev('c', 'create', 'inst', 'i2')], 'inst', open);
    assert.equal(first.get('i1')![0]!.to, Infinity);
    const second = instanceLifetimes([ev('c', 'delete', 'inst', 'i1'), ev('c', 'update', 'inst', 'i2')], 'inst', open);
    assert.ok(Number.isFinite(second.get('i1')![0]!.to));
    assert.equal(second.get('i2')![0]!.to, Infinity);
    assert.deepEqual([...open.keys()], ['i2']);
  });

  describe('AuditTail', () => {
    const line = (name: string) => `${JSON.stringify(ev('agent', 'update', 'leases', name, 200, 'ns'))}\n`;
    const names = (events: AuditEvent[]) => events.map((e) => e.objectRef?.name);
    const withDir = (fn: (path: string, dir: string) => void) => {
      const dir = mkdtempSync(join(tmpdir(), 'egressgw-audit-'));
      try {
        fn(join(dir, 'audit.log'), dir);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    };

    it('reads what was written since the last read; a line torn between two reads is read once whole', () => withDir((path) => {
      const tail = new AuditTail(path);
      assert.deepEqual(tail.read(), [], 'no file yet');
      writeFileSync(path, line('a') + line('b'));
      assert.deepEqual(names(tail.read()), ['a', 'b']);
      const c = line('c');
      appendFileSync(path, c.slice(0, 20));
      assert.deepEqual(tail.read(), []);
      appendFileSync(path, c.slice(20) + line('d'));
      assert.deepEqual(names(tail.read()), ['c', 'd']);
      tail.close();
    }));

    // Chaos linux seed 20261225 round 242: the server's log backend rotated the file (rename, new file)
    // between two reads; reading only the new file lost the old one's last seconds of renewals.
    it('a rotation between two reads: the old file is read to its end, then the new one from its start', () => withDir((path, dir) => {
      const tail = new AuditTail(path);
      writeFileSync(path, line('a'));
      assert.deepEqual(names(tail.read()), ['a']);
      appendFileSync(path, line('b') + line('c')); // written after the read, before the rotation
      renameSync(path, join(dir, 'audit-2026-12-07T08-50-03.log'));
      assert.deepEqual(names(tail.read()), ['b', 'c'], 'between the rename and the new file');
      writeFileSync(path, line('d') + line('e') + line('f')); // bigger than the old offset
      assert.deepEqual(names(tail.read()), ['d', 'e', 'f']);
      appendFileSync(path, line('g'));
      renameSync(path, join(dir, 'audit-2026-12-07T08-51-00.log'));
      writeFileSync(path, line('h'));
      assert.deepEqual(names(tail.read()), ['g', 'h'], 'rotated with the new file already there');
      tail.close();
    }));

    it("the test cluster's whole log: the rotated files oldest first, then the current one", () => withDir((path, dir) => {
      assert.deepEqual(auditLogFiles(path), []);
      writeFileSync(path, line('c'));
      writeFileSync(join(dir, 'audit-2026-12-07T08-51-00.000.log'), line('b'));
      writeFileSync(join(dir, 'audit-2026-12-07T08-50-03.000.log'), line('a'));
      writeFileSync(join(dir, 'audit-policy.yaml'), '');
      assert.deepEqual(auditLogFiles(path).map((f) => f.slice(dir.length + 1)), ['audit-2026-12-07T08-50-03.000.log', 'audit-2026-12-07T08-51-00.000.log', 'audit.log']);
    }));

    it('a file truncated in place is read again from its start', () => withDir((path) => {
      const tail = new AuditTail(path);
      writeFileSync(path, line('a') + line('b'));
      assert.deepEqual(names(tail.read()), ['a', 'b']);
      writeFileSync(path, line('c'));
      assert.deepEqual(names(tail.read()), ['c']);
      tail.close();
    }));
  });
});
