// The fault proxy in its child process (faultproxy-process.ts), on loopback against an echo server: the
// commands reach the child and act on the bytes; a seeded spike schedule runs there and comes back.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { FaultProxyProcess } from './faultproxy-process.ts';
import { poll } from './poll.ts';

describe('fault proxy in a child process', () => {
  let echo: Server;
  let proxy: FaultProxyProcess;

  before(async () => {
    echo = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const port = (echo.address() as { port: number }).port;
    proxy = await FaultProxyProcess.start({ host: '127.0.0.1', port }, { host: '127.0.0.1' });
  });

  after(async () => {
    await proxy.close();
    await new Promise<void>((r) => echo.close(() => r()));
  });

  /** Connects through the proxy; resolves to the socket and what came back, or rejects if it is reset. */
  async function client(): Promise<{ sock: Socket; got: () => string }> {
    let got = '';
    const sock = connect({ host: proxy.address.host, port: proxy.address.port });
    sock.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.write('ping', (err) => (err ? reject(err) : undefined));
      sock.on('data', () => resolve());
    });
    return { sock, got: () => got };
  }

  it('forwards both ways', async () => {
    const c = await client();
    c.sock.write('-hello');
    await poll('the echo', () => c.got() === 'ping-hello', 5000, { intervalMs: 5 });
    c.sock.destroy();
  });

  it('a rule added through the child acts until it is removed', async () => {
    const remove = await proxy.add({ kind: 'refuse' });
    await assert.rejects(client(), /ECONNRESET|EPIPE/);
    await remove();
    const c = await client();
    assert.equal(c.got(), 'ping');
    c.sock.destroy();
  });

  it('a seeded spike schedule runs in the child and its spikes are handed back', async () => {
    const schedule = await proxy.spikes({ delayMs: 50, durationMs: 20, gapMs: { min: 5, max: 10 }, seed: 1 });
    await poll('three spikes from the child', () => schedule.record.length >= 3, 5000, { intervalMs: 5 });
    const record = await schedule.stop();
    assert.ok(record.length >= 3, 'the spikes so far');
    for (const s of record) assert.ok(Number.isFinite(s.end) && s.end >= s.start && s.delayMs === 50);
    for (let i = 1; i < record.length; i++) assert.ok(record[i]!.start >= record[i - 1]!.end, 'spikes do not overlap');
  });
});
