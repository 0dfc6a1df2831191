// The addon itself, on loopback only. Real frames between hosts are covered by test/agent/wire.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ETH_P_ALL, ETH_P_ARP, PacketSocket, canSendFrames, ifNameToIndex, loadAddon } from './packet.ts';
import { arpRequestFrame } from './frames.ts';
import { assertUnprivileged } from './packet-eperm.check.ts';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const isRoot = process.getuid?.() === 0;

/** Why a child process failed, including when it never started (then there is no status and no output). */
function childOutcome(r: SpawnSyncReturns<string>): string {
  if (r.error) return `could not run it: ${r.error.message}`;
  const how = r.signal ? `killed by ${r.signal}` : `exit status ${r.status}`;
  return `${how}; stdout: ${r.stdout || '(empty)'}; stderr: ${r.stderr || '(empty)'}`;
}

describe('PacketSocket', () => {
  it('loads the addon (built by node-gyp from binding.gyp)', () => {
    assert.equal(typeof loadAddon().RawSocket, 'function');
    assert.equal(ifNameToIndex('lo'), 1);
  });

  it('reports a missing interface with code ENODEV', () => {
    assert.throws(() => PacketSocket.open('egnosuch0', ETH_P_ARP), (err: NodeJS.ErrnoException) => err.code === 'ENODEV' && /No such device/.test(err.message));
    assert.deepEqual(canSendFrames('egnosuch0').ok, false);
  });

  it('rejects bad arguments with code EINVAL', { skip: !isRoot && 'needs CAP_NET_RAW to get past socket()' }, () => {
    const s = PacketSocket.open('lo', ETH_P_ARP);
    try {
      assert.throws(() => s.send(Buffer.alloc(3)), (err: NodeJS.ErrnoException) => err.code === 'EINVAL');
      assert.throws(() => s.addMulticast(Buffer.alloc(5)), (err: NodeJS.ErrnoException) => err.code === 'EINVAL');
    } finally {
      s.close();
    }
    s.close(); // idempotent
    assert.throws(() => s.send(Buffer.alloc(60)), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
  });

  it('without CAP_NET_RAW, opening fails with EPERM and the self-check says why', () => {
    if (!isRoot) {
      assertUnprivileged();
      return;
    }
    // As root (CI), prove it in a child process that is still root but has CAP_NET_RAW removed from its
    // bounding and inheritable sets (setpriv, util-linux), so it cannot regain it at exec. Staying root
    // matters: an unprivileged uid such as nobody cannot even start when the checkout sits under a
    // directory only root may enter (a clone in /root, or in a mktemp -d directory).
    const check = fileURLToPath(new URL('./packet-eperm.check.ts', import.meta.url));
    const child = spawnSync('setpriv', ['--bounding-set=-net_raw', '--inh-caps=-net_raw', '--', process.execPath, check], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(child.status, 0, `unprivileged check (${check}) failed: ${childOutcome(child)}`);
    assert.match(child.stdout, /EPERM/);
  });

  it('sends and receives a frame on loopback', { skip: !isRoot && 'needs CAP_NET_RAW' }, async () => {
    assert.deepEqual(canSendFrames('lo'), { ok: true });
    // ETH_P_ALL: only "all protocols" sockets are handed copies of transmitted frames by the kernel.
    const rx = PacketSocket.open('lo', ETH_P_ALL);
    const tx = PacketSocket.open('lo', ETH_P_ARP);
    try {
      // Unique sender IPs so frames from anything else on loopback cannot match.
      const frame = arpRequestFrame({ senderMac: '02:00:00:00:00:0b', senderIp: '198.18.255.77', targetIp: '198.18.255.78' });
      const marker = arpRequestFrame({ senderMac: '02:00:00:00:00:0b', senderIp: '198.18.255.79', targetIp: '198.18.255.78' });
      const seen: Buffer[] = [];
      const markerSeen = new Promise<void>((resolve) =>
        rx.on('frame', (f) => {
          if (f.equals(frame)) seen.push(f);
          if (f.equals(marker)) resolve();
        }),
      );
      assert.equal(tx.send(frame), frame.length);
      tx.send(marker);
      // A socket's queue is FIFO: once the marker is in, every copy of the first frame is too.
      await markerSeen;
      // Loopback hands other packet sockets both the PACKET_OUTGOING copy and the incoming one; only
      // the incoming one may reach us.
      assert.equal(seen.length, 1);
      assert.deepEqual(seen[0], frame);
    } finally {
      rx.close();
      tx.close();
    }
  });
});
