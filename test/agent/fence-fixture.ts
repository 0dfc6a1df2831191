// Runs inside a lab namespace through NetnsRpc (src/testenv/netns-rpc.ts): the fence acting on this
// namespace's nftables with libnftables in process, as in the agent, plus a few sockets to see what the
// gate lets through. One module instance per namespace; state lives here between calls.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { Fence, type FenceState } from '../../src/agent/fence.ts';
import { openNft } from '../../src/agent/net/nft.ts';

let fence: Fence | undefined;
const f = (): Fence => (fence ??= new Fence(openNft()));

export const install = (): void => f().install();
export const uninstall = (): void => f().uninstall();
export const openFor = (ips: string[], ms: number): boolean => f().openUntil(ips, performance.now() + ms);
export const close = (ips: string[]): void => f().close(ips);
export const forget = (ips: string[]): void => f().forget(ips);
export const state = (): FenceState => f().state();
/** Seconds left on each open element as the kernel reports them (nft `expires`). */
export function expiresMs(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [family, set] of [['arp', 'open'], ['inet', 'open4'], ['inet', 'open6']] as const) {
    const table = openNft().listTable(family, 'egressgw_fence');
    const s = table?.find((o) => o.set?.name === set)?.set;
    for (const e of (s?.elem as Array<{ elem?: { val: string; expires?: number } }> | undefined) ?? []) {
      if (e.elem?.expires !== undefined) out[`${family}/${e.elem.val}`] = Math.round(e.elem.expires * 1000);
    }
  }
  return out;
}

// UDP: payloads received (a payload names the address a datagram was sent to or from).
let udp: UdpSocket | undefined;
const received: string[] = [];
export async function udpListen(port: number): Promise<void> {
  udp = createSocket({ type: 'udp6', ipv6Only: false });
  udp.on('message', (m) => received.push(m.toString()));
  await new Promise<void>((resolve) => udp!.bind(port, resolve));
}
export const udpReceived = (): string[] => [...received];
/**
 * Sends one datagram carrying `payload` from address `from` ('' = the kernel's choice) to `to`:`port`.
 * Resolves 'sent', or 'EPERM' when netfilter dropped it on the way out (a local sender learns that).
 */
export async function udpSend(from: string, to: string, port: number, payload: string): Promise<'sent' | 'EPERM'> {
  const s = createSocket(to.includes(':') ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind({ port: 0, ...(from === '' ? {} : { address: from }) }, () => s.send(payload, port, to, (err) => (err ? reject(err) : resolve())));
    });
    return 'sent';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EPERM') return 'EPERM';
    throw err;
  } finally {
    s.close();
  }
}
