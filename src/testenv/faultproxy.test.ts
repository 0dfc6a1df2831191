// The fault proxy on loopback, against a small echo server. What is asserted is what happens to the
// bytes (forwarded, dropped, kept in order), not how long anything took.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { FaultProxy, type SpikeRecord } from './faultproxy.ts';
import { poll } from './poll.ts';

describe('fault proxy', () => {
  let echo: Server;
  let proxy: FaultProxy;

  before(async () => {
    echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const port = (echo.address() as { port: number }).port;
    proxy = await FaultProxy.start({ host: '127.0.0.1', port }, { host: '127.0.0.1' });
  });

  after(async () => {
    await proxy.close();
    await new Promise<void>((r) => echo.close(() => r()));
  });

  /** A client through the proxy, from `localAddress`, collecting what comes back. */
  async function client(localAddress = '127.0.0.1'): Promise<{ sock: Socket; got: () => string }> {
    let got = '';
    const sock = connect({ host: proxy.address.host, port: proxy.address.port, localAddress });
    sock.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise<void>((r) => sock.once('connect', r));
    return { sock, got: () => got };
  }

  it('forwards both ways', async () => {
    const c = await client();
    c.sock.write('hello');
    await poll('the echo', () => c.got() === 'hello', 5000, { intervalMs: 5 });
    c.sock.destroy();
  });

  it('a delay keeps the order: what comes after a delayed chunk never overtakes it', async () => {
    const c = await client();
    const remove = proxy.add({ kind: 'delay', ms: 200, direction: 'both' });
    const before = proxy.bytesFromClients;
    c.sock.write('first,');
    await poll('the first chunk at the proxy', () => proxy.bytesFromClients >= before + 6, 5000, { intervalMs: 1 });
    remove();
    // Sent without any delay rule, but queued behind the delayed chunk (in both directions).
    c.sock.write('second');
    await poll('both chunks back', () => c.got().length === 'first,second'.length, 5000, { intervalMs: 5 });
    assert.equal(c.got(), 'first,second');
    c.sock.destroy();
  });

  it('a cut drops the bytes of the clients it names, and only theirs', async () => {
    const cutOne = await client('127.0.0.2');
    const other = await client('127.0.0.1');
    const remove = proxy.add({ kind: 'cut', clients: ['127.0.0.2'] });
    const before = proxy.bytesFromClients;
    cutOne.sock.write('lost');
    await poll('the cut bytes at the proxy', () => proxy.bytesFromClients >= before + 4, 5000, { intervalMs: 1 });
    other.sock.write('kept');
    await poll('the other client\'s echo', () => other.got() === 'kept', 5000, { intervalMs: 5 });
    remove();
    // After the cut: the dropped bytes are gone for good, new ones flow again.
    cutOne.sock.write('back');
    await poll('the echo after the cut', () => cutOne.got().length >= 4, 5000, { intervalMs: 5 });
    assert.equal(cutOne.got(), 'back');
    cutOne.sock.destroy();
    other.sock.destroy();
  });

  it('a holding cut keeps the bytes while it lasts and delivers them, in order, when it is removed', async () => {
    const c = await client('127.0.0.3');
    const remove = proxy.add({ kind: 'cut', hold: true, clients: ['127.0.0.3'] });
    const before = proxy.bytesFromClients;
    c.sock.write('held,');
    c.sock.write('also');
    await poll('the held bytes at the proxy', () => proxy.bytesFromClients >= before + 9, 5000, { intervalMs: 1 });
    assert.equal(c.got(), '', 'nothing passes while the cut lasts');
    remove();
    await poll('the held bytes delivered', () => c.got().length >= 9, 5000, { intervalMs: 5 });
    assert.equal(c.got(), 'held,also');
    c.sock.write('+after');
    await poll('new bytes flow', () => c.got() === 'held,also+after', 5000, { intervalMs: 5 });
    c.sock.destroy();
  });

  it('spikes come and go on their schedule and are recorded', async () => {
    const record: SpikeRecord[] = [];
    const stop = proxy.spikes({ delayMs: 50, durationMs: 20, gapMs: { min: 5, max: 10 } }, record);
    await poll('three spikes', () => record.filter((s) => Number.isFinite(s.end)).length >= 3, 5000, { intervalMs: 5 });
    stop();
    assert.ok(record.every((s) => s.delayMs === 50 && s.end >= s.start));
    for (let i = 1; i < record.length; i++) assert.ok(record[i]!.start >= record[i - 1]!.end, 'spikes do not overlap');
    const c = await client();
    c.sock.write('after');
    await poll('the echo with no spike left', () => c.got() === 'after', 5000, { intervalMs: 5 });
    c.sock.destroy();
  });
  it('a client that stops reading holds the server back (TCP flow control), not the proxy\'s memory', async () => {
    // The server queues 32 MiB at once; the client reads nothing. A proxy that reads on regardless would
    // end up holding nearly all of it (the server's buffer empties into the proxy's); with backpressure it
    // stops reading when its side towards the client is full, and most of it stays queued at the server.
    const total = 32 * 1024 * 1024;
    let serverSide: Socket | undefined;
    const firehose = createServer((s) => {
      serverSide = s;
      const chunk = Buffer.alloc(1024 * 1024, 7);
      for (let i = 0; i < total / chunk.length; i++) s.write(chunk);
    });
    await new Promise<void>((r) => firehose.listen(0, '127.0.0.1', r));
    const p = await FaultProxy.start({ host: '127.0.0.1', port: (firehose.address() as { port: number }).port }, { host: '127.0.0.1' });
    const sock = connect({ host: p.address.host, port: p.address.port });
    sock.pause();
    try {
      // Settled: the server's queue no longer shrinks (kernel buffers on the way are full) and is not empty.
      let last = -1;
      await poll('the server held back', () => {
        const queued = serverSide?.writableLength ?? 0;
        const settled = queued > 0 && queued === last;
        last = queued;
        return settled;
      }, 20_000, { intervalMs: 100 });
      assert.ok(p.bufferedBytes < 4 * 1024 * 1024, `the proxy holds ${p.bufferedBytes} bytes`);
      assert.ok(serverSide!.writableLength > total / 2, `only ${serverSide!.writableLength} bytes still queued at the server`);
      // Nothing is lost: once the client reads, all of it arrives.
      let got = 0;
      sock.on('data', (d: Buffer) => (got += d.length));
      sock.resume();
      await poll('everything delivered', () => got === total, 20_000, { intervalMs: 20 });
    } finally {
      sock.destroy();
      await p.close();
      await new Promise<void>((r) => firehose.close(() => r()));
    }
  });
});
