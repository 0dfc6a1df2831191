// The unprivileged half of packet.test.ts: without CAP_NET_RAW, opening a packet socket fails with
// EPERM and the /readyz self-check reports it. Run directly (as a child process under an unprivileged
// uid) it prints the error code; imported, it exports the assertion for non-root test runs.
import assert from 'node:assert/strict';
import { ETH_P_ARP, PacketSocket, canSendFrames } from './packet.ts';

export function assertUnprivileged(): string {
  let code = '';
  assert.throws(() => PacketSocket.open('lo', ETH_P_ARP), (err: NodeJS.ErrnoException) => {
    code = err.code ?? '';
    return err.code === 'EPERM';
  });
  const check = canSendFrames();
  assert.equal(check.ok, false);
  return code;
}

if (process.argv[1] === import.meta.filename) {
  process.stdout.write(assertUnprivileged() + '\n');
}
