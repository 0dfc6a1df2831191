// errFields: what a log line keeps of an error.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { errFields } from './log.ts';

describe('errFields', () => {
  it('keeps message, code and body', () => {
    const e = Object.assign(new Error('boom'), { code: 409, body: { reason: 'Conflict' } });
    assert.deepEqual(errFields(e), { err: 'boom', code: 409, body: '{"reason":"Conflict"}' });
  });

  it("names the cause of fetch's network errors, which all read \"fetch failed\"", async () => {
    // A server that accepts and closes at once: the request fails before any answer.
    const server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    try {
      const err = await fetch(`http://127.0.0.1:${port}/`).then(() => undefined, (e: unknown) => e);
      const f = errFields(err);
      assert.equal(f.err, 'fetch failed');
      assert.equal(typeof f.cause, 'string');
      assert.match(String(f.cause), /UND_ERR_SOCKET|ECONNRESET|other side closed/);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('follows a chain of causes', () => {
    const inner = Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' });
    const outer = new Error('fetch failed', { cause: Object.assign(new Error('Connect Timeout Error'), { code: 'UND_ERR_CONNECT_TIMEOUT', cause: inner }) });
    assert.equal(errFields(outer).cause, 'UND_ERR_CONNECT_TIMEOUT: Connect Timeout Error ← ETIMEDOUT: connect ETIMEDOUT');
  });
});
