// Runs inside a test namespace through NetnsRpc: the agent's address manager in its own namespace, where
// it changes addresses with rtnetlink in process. PATH is emptied first, so any `ip` it tried to run
// would fail: what works here works without a process.
import { IpRoute, type ReplaceAddressOptions } from '../../src/agent/net/iproute.ts';

process.env.PATH = '/nonexistent';
const ip = new IpRoute();

export const replace = (ifname: string, cidr: string, opts: ReplaceAddressOptions): Promise<void> => ip.replaceAddress(ifname, cidr, opts);
export const remove = (ifname: string, cidr: string): Promise<void> => ip.deleteAddress(ifname, cidr);
