// The network builder of the test environment: a LAN of gateway nodes behind a router, built from
// network namespaces, veth pairs and a bridge. Used by the agent's wire tests and, with a management
// bridge, by the end-to-end environment (env.ts). Needs root and iproute2.
//
// Network.create() builds the LAN below; addNamespace() and addVeth() extend it (more hosts, other
// links), and whatever they add is removed with the rest at teardown.
//
//   root ns ── (optional) mgmt bridge <id>m 198.19.B.1/24 ── veth <id>m<i> ── mgmt0 198.19.B.(10+i) in node i
//   router ns <id>-router: br0 198.18.0.1/24 2001:db8::1/64, ports p1..pN
//   node ns <id>-node<i>:  eth0 198.18.0.(10+i)/24 2001:db8::(10+i)/64, default routes via the router
//
// Everything is named after a random per-network id, so parallel runs do not collide. Interfaces inside
// namespaces have fixed names (eth0, br0, p1…) because they cannot clash; only the few root-namespace
// links carry the id. A marker file records the owning PID so sweepStale() never removes a live network.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const LAN_PREFIX = 24;
export const ROUTER_IP = '198.18.0.1';
export const ROUTER_IP6 = '2001:db8::1';
const MARKER_DIR = '/run/egressgw-netns';

export interface NetworkOptions {
  /** Gateway nodes (default 2). */
  nodes?: number;
  /** Name prefix, 2–6 characters (default 'eg'); the id is prefix + 6 hex digits. */
  prefix?: string;
  /** Also connect every node to the root namespace through a management bridge. */
  management?: boolean;
}

export interface NetRouter {
  ns: string;
  bridge: string;
  ip: string;
  ip6: string;
  mac: string;
}

export interface NetNode {
  name: string;
  ns: string;
  /** LAN interface inside the node namespace. */
  ifname: string;
  ip: string;
  ip6: string;
  mac: string;
  /** Management link to the root namespace, when requested. */
  mgmt?: { ifname: string; ip: string; hostIp: string };
}

export interface NeighbourEntry {
  ip: string;
  dev: string;
  mac: string | undefined;
  state: string[];
}

export class CommandError extends Error {
  readonly stderr: string;
  constructor(cmd: string[], stderr: string) {
    super(`${cmd.join(' ')} failed: ${stderr.trim()}`);
    this.name = 'CommandError';
    this.stderr = stderr;
  }
}

async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    throw new CommandError([cmd, ...args], e.stderr || e.message || '');
  }
}

/** Throws with a clear message unless we are root and `ip netns` works. */
export async function assertNetnsSupported(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error('network namespaces need root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN): run the agent wire tests as root');
  }
  try {
    await run('ip', ['netns', 'list']);
  } catch (err) {
    throw new Error(`'ip netns' is not usable (iproute2 missing?): ${(err as Error).message}`);
  }
}

const liveNetworks = new Set<Network>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', () => {
    for (const net of liveNetworks) net.teardownSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const net of liveNetworks) net.teardownSync();
      // Re-raise with the default action so the exit status still says "killed by signal".
      process.kill(process.pid, sig);
    });
  }
}

export class Network {
  readonly id: string;
  readonly router: NetRouter;
  readonly nodes: NetNode[];
  /** Management bridge in the root namespace and its address, when requested. */
  readonly mgmt: { bridge: string; hostIp: string; subnet: string } | undefined;
  readonly #rootLinks: string[] = [];
  /** Every namespace created, in order (the router, the nodes, any added later). */
  readonly #namespaces: string[] = [];
  readonly #children = new Set<ChildProcess>();
  #torndown = false;

  private constructor(id: string, router: NetRouter, nodes: NetNode[], mgmt: Network['mgmt']) {
    this.id = id;
    this.router = router;
    this.nodes = nodes;
    this.mgmt = mgmt;
  }

  /** Builds the LAN. On failure everything created so far is removed before the error propagates. */
  static async create(opts: NetworkOptions = {}): Promise<Network> {
    await assertNetnsSupported();
    const prefix = opts.prefix ?? 'eg';
    if (!/^[a-z][a-z0-9]{1,5}$/.test(prefix)) throw new Error(`network prefix must be 2-6 lower-case alphanumerics, got ${JSON.stringify(prefix)}`);
    const count = opts.nodes ?? 2;
    if (count < 1 || count > 40) throw new Error('a network has 1-40 nodes');
    const id = prefix + randomBytes(3).toString('hex');
    mkdirSync(MARKER_DIR, { recursive: true });
    writeFileSync(join(MARKER_DIR, id), String(process.pid));

    const router: NetRouter = { ns: `${id}-router`, bridge: 'br0', ip: ROUTER_IP, ip6: ROUTER_IP6, mac: '' };
    const nodes: NetNode[] = [];
    const mgmt = opts.management ? await pickMgmtSubnet(id) : undefined;
    const net = new Network(id, router, nodes, mgmt);
    liveNetworks.add(net);
    installExitHooks();
    try {
      await net.addNamespace('router');
      await net.ip(router.ns, ['link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
      // Snooping off: the agent's NDP responder joins solicited-node groups on the packet socket, which
      // sends no MLD report; a snooping bridge would then hide NS for VIPs the kernel does not hold.
      await net.ip(router.ns, ['addr', 'add', `${ROUTER_IP}/${LAN_PREFIX}`, 'dev', 'br0']);
      await net.ip(router.ns, ['addr', 'add', `${ROUTER_IP6}/64`, 'dev', 'br0', 'nodad']);
      await net.ip(router.ns, ['link', 'set', 'br0', 'up']);
      // A bridge otherwise takes the lowest MAC of its ports and changes it as ports come and go;
      // setting it explicitly pins it, so router.mac stays true.
      router.mac = await net.macOf(router.ns, 'br0');
      await net.ip(router.ns, ['link', 'set', 'br0', 'address', router.mac]);
      if (mgmt !== undefined) {
        await run('ip', ['link', 'add', mgmt.bridge, 'type', 'bridge']);
        net.#rootLinks.push(mgmt.bridge);
        await run('ip', ['addr', 'add', `${mgmt.hostIp}/24`, 'dev', mgmt.bridge]);
        await run('ip', ['link', 'set', mgmt.bridge, 'up']);
      }
      for (let i = 1; i <= count; i++) nodes.push(await net.#addNode(i));
      return net;
    } catch (err) {
      await net.teardown();
      throw err;
    }
  }

  /**
   * Adds a namespace `<id>-<name>` (loopback up, no IPv6 DAD) and returns its full name. Removed at
   * teardown with the rest; connect it with addVeth().
   */
  async addNamespace(name: string): Promise<string> {
    const ns = `${this.id}-${name}`;
    await run('ip', ['netns', 'add', ns]);
    this.#namespaces.push(ns);
    // No DAD here: addresses are usable at once and moved VIPs never go "tentative".
    await this.exec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    return ns;
  }

  async #addNode(i: number): Promise<NetNode> {
    const ns = await this.addNamespace(`node${i}`);
    const port = `p${i}`;
    await run('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.router.ns]);
    await this.ip(this.router.ns, ['link', 'set', port, 'master', 'br0', 'up']);
    const ip = `198.18.0.${10 + i}`;
    const ip6 = `2001:db8::${10 + i}`;
    await this.ip(ns, ['addr', 'add', `${ip}/${LAN_PREFIX}`, 'dev', 'eth0']);
    await this.ip(ns, ['addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
    await this.ip(ns, ['link', 'set', 'eth0', 'up']);
    await this.ip(ns, ['route', 'add', 'default', 'via', ROUTER_IP]);
    const node: NetNode = { name: `node${i}`, ns, ifname: 'eth0', ip, ip6, mac: await this.macOf(ns, 'eth0') };
    if (this.mgmt !== undefined) {
      const hostSide = `${this.id}m${i}`;
      await run('ip', ['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'mgmt0', 'netns', ns]);
      this.#rootLinks.push(hostSide);
      await run('ip', ['link', 'set', hostSide, 'master', this.mgmt.bridge, 'up']);
      const mip = this.mgmt.subnet.replace(/\.0$/, `.${10 + i}`);
      await this.ip(ns, ['addr', 'add', `${mip}/24`, 'dev', 'mgmt0']);
      await this.ip(ns, ['link', 'set', 'mgmt0', 'up']);
      node.mgmt = { ifname: 'mgmt0', ip: mip, hostIp: this.mgmt.hostIp };
    }
    return node;
  }

  /** `ip netns exec ns cmd args…`; resolves stdout, rejects with stderr. */
  exec(ns: string, cmd: string, args: string[]): Promise<string> {
    return run('ip', ['netns', 'exec', ns, cmd, ...args]);
  }

  /** `ip -n ns args…`. */
  ip(ns: string, args: string[]): Promise<string> {
    return run('ip', ['-n', ns, ...args]);
  }

  /**
   * Starts a long-running process inside a namespace. It is killed at teardown; the caller may end it
   * earlier with `child.kill()`. It leads a process group of its own, and whatever is left of the group
   * when it exits is killed with it: an agent killed with SIGKILL would otherwise leave its long-lived
   * `ip monitor` child running, orphaned (in a pod, the container's end takes such children along).
   */
  spawnIn(ns: string, cmd: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    this.#children.add(child);
    child.once('exit', () => {
      this.#children.delete(child);
      killGroup(child, 'SIGKILL');
    });
    return child;
  }

  /** The kernel's neighbour entry for `ip` in `ns` (any device), or undefined. */
  async neighbour(ns: string, ip: string): Promise<NeighbourEntry | undefined> {
    const out = await this.ip(ns, ['-json', 'neigh', 'show', 'to', ip]);
    const entries = parseNeighbours(out.trim() === '' ? [] : JSON.parse(out));
    return entries.find((e) => e.ip === ip) ?? entries[0];
  }

  /** Whether an interface in `ns` holds `ip` right now. */
  async hasAddress(ns: string, ip: string): Promise<boolean> {
    const out = await this.ip(ns, ['-o', 'addr', 'show']);
    return out.split('\n').some((l) => l.includes(` ${ip}/`));
  }

  async setLink(ns: string, ifname: string, state: 'up' | 'down'): Promise<void> {
    await this.ip(ns, ['link', 'set', ifname, state]);
  }

  async macOf(ns: string, ifname: string): Promise<string> {
    const out = JSON.parse(await this.ip(ns, ['-json', 'link', 'show', 'dev', ifname])) as { address?: string }[];
    const mac = out[0]?.address;
    if (mac === undefined) throw new Error(`${ns}/${ifname} has no MAC address`);
    return mac.toLowerCase();
  }

  /**
   * Adds a host on the gateway LAN that is not a gateway node (an observer): namespace `<id>-<name>`,
   * `eth0` with `ip`/24 on the router's bridge. Removed with the network.
   */
  async addLanHost(name: string, ip: string): Promise<{ ns: string; ifname: string; ip: string; mac: string }> {
    const ns = await this.addNamespace(name);
    const port = `h${this.#namespaces.length}`;
    await run('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.router.ns]);
    await this.ip(this.router.ns, ['link', 'set', port, 'master', this.router.bridge, 'up']);
    await this.ip(ns, ['addr', 'add', `${ip}/${LAN_PREFIX}`, 'dev', 'eth0']);
    await this.ip(ns, ['link', 'set', 'eth0', 'up']);
    return { ns, ifname: 'eth0', ip, mac: await this.macOf(ns, 'eth0') };
  }

  /**
   * Adds a host on the management bridge only (no gateway LAN): namespace `<id>-<name>` with `mgmt0` at
   * the subnet's `.hostNumber` (200–249, clear of the nodes' .11…). A process in it reaches the API side
   * from an address of its own, so a fault proxy can tell it apart (a controller replica). Removed with
   * the network.
   */
  async addManagementHost(name: string, hostNumber: number): Promise<{ ns: string; ip: string; hostIp: string }> {
    if (this.mgmt === undefined) throw new Error('addManagementHost: the network has no management bridge');
    if (!Number.isInteger(hostNumber) || hostNumber < 200 || hostNumber > 249) throw new Error('addManagementHost: hostNumber must be 200-249');
    const ns = await this.addNamespace(name);
    // Two digits at most: a link name has 15 characters, and the id up to 12.
    const hostSide = `${this.id}h${hostNumber - 200}`;
    await run('ip', ['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'mgmt0', 'netns', ns]);
    this.#rootLinks.push(hostSide);
    await run('ip', ['link', 'set', hostSide, 'master', this.mgmt.bridge, 'up']);
    const ip = this.mgmt.subnet.replace(/\.0$/, `.${hostNumber}`);
    await this.ip(ns, ['addr', 'add', `${ip}/24`, 'dev', 'mgmt0']);
    await this.ip(ns, ['link', 'set', 'mgmt0', 'up']);
    return { ns, ip, hostIp: this.mgmt.hostIp };
  }

  /** Adds a veth pair between two namespaces of this network (removed with them at teardown). */
  async addVeth(nsA: string, ifA: string, nsB: string, ifB: string): Promise<void> {
    await run('ip', ['link', 'add', ifA, 'netns', nsA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    await this.ip(nsA, ['link', 'set', ifA, 'up']);
    await this.ip(nsB, ['link', 'set', ifB, 'up']);
  }

  namespaces(): string[] {
    return [...this.#namespaces];
  }

  /** Kills helper processes, deletes the namespaces (and the veths in them) and root-side links. Idempotent. */
  async teardown(): Promise<void> {
    if (this.#torndown) return;
    this.#torndown = true;
    liveNetworks.delete(this);
    for (const child of this.#children) killGroup(child, 'SIGKILL');
    const errors: string[] = [];
    for (const link of this.#rootLinks) {
      await run('ip', ['link', 'del', link]).catch((e: Error) => {
        if (!/Cannot find device/.test(e.message)) errors.push(e.message);
      });
    }
    for (const ns of await listNamespaces(this.id)) {
      await run('ip', ['netns', 'del', ns]).catch((e: Error) => errors.push(e.message));
    }
    rmSync(join(MARKER_DIR, this.id), { force: true });
    if (errors.length > 0) throw new Error(`network ${this.id} teardown: ${errors.join('; ')}`);
  }

  /** Synchronous teardown for process exit and signals. */
  teardownSync(): void {
    if (this.#torndown) return;
    this.#torndown = true;
    liveNetworks.delete(this);
    for (const child of this.#children) killGroup(child, 'SIGKILL');
    for (const link of this.#rootLinks) {
      try {
        execFileSync('ip', ['link', 'del', link], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    for (const ns of this.namespaces()) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    rmSync(join(MARKER_DIR, this.id), { force: true });
  }
}

/**
 * Signals the process group `child` leads (see spawnIn). The group id stays taken while any member
 * lives, so this never reaches a group we did not start; an empty group is ESRCH, ignored.
 */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is gone already
  }
}

export function parseNeighbours(json: unknown): NeighbourEntry[] {
  if (!Array.isArray(json)) return [];
  return (json as Record<string, unknown>[]).map((e) => ({
    ip: String(e.dst),
    dev: String(e.dev),
    mac: typeof e.lladdr === 'string' ? e.lladdr.toLowerCase() : undefined,
    state: Array.isArray(e.state) ? e.state.map(String) : [],
  }));
}

async function listNamespaces(prefix: string): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${prefix}-`));
}

async function pickMgmtSubnet(id: string): Promise<{ bridge: string; hostIp: string; subnet: string }> {
  const used = await run('ip', ['-4', '-o', 'addr', 'show']);
  for (let attempt = 0; attempt < 50; attempt++) {
    const b = randomBytes(1)[0]!;
    const subnet = `198.19.${b}.0`;
    if (!used.includes(` 198.19.${b}.`)) return { bridge: `${id}m`, hostIp: `198.19.${b}.1`, subnet };
  }
  throw new Error('no free 198.19.x.0/24 management subnet');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes namespaces and root links of networks with this prefix whose owning process is gone (a crashed
 * run). Networks of live processes are left alone. Returns the ids removed.
 */
export async function sweepStale(prefix = 'eg'): Promise<string[]> {
  const idRe = new RegExp(`^(${prefix}[0-9a-f]{6})(?:-|[mh]\\d*$)`);
  const owners = new Map<string, number>();
  try {
    for (const f of readdirSync(MARKER_DIR)) owners.set(f, Number(readFileSync(join(MARKER_DIR, f), 'utf8')));
  } catch {
    // no marker directory yet
  }
  const stale = (id: string): boolean => {
    const pid = owners.get(id);
    return pid === undefined || !Number.isInteger(pid) || !pidAlive(pid);
  };
  const removed = new Set<string>();
  const nsOut = await run('ip', ['netns', 'list']);
  for (const ns of nsOut.split('\n').map((l) => l.split(' ')[0] ?? '')) {
    const id = idRe.exec(ns)?.[1];
    if (id !== undefined && stale(id)) {
      await run('ip', ['netns', 'del', ns]).catch(() => undefined);
      removed.add(id);
    }
  }
  const links = JSON.parse(await run('ip', ['-json', 'link', 'show'])) as { ifname: string }[];
  for (const { ifname } of links) {
    const id = idRe.exec(ifname)?.[1];
    if (id !== undefined && stale(id)) {
      await run('ip', ['link', 'del', ifname]).catch(() => undefined);
      removed.add(id);
    }
  }
  for (const id of owners.keys()) {
    if (id.startsWith(prefix) && stale(id)) {
      rmSync(join(MARKER_DIR, id), { force: true });
      removed.add(id);
    }
  }
  return [...removed];
}
