// What the suite's own side looked like during a round, recorded with it. The fault proxy runs in the
// suite's process and listens in the root namespace next to the API server, so when every proxied client
// times out while the suite's direct client works (seed 20261207 rounds 24–25 and 40–41: ~4 min of
// connect timeouts, then all clients back within 70 ms), these tell a busy or bloated suite process, a
// proxy holding data, a listener whose accept queue overflowed, and a machine shared with other runs
// apart.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

export interface SuiteHealth {
  /** Event-loop delay (ms) of the suite process: median and 99th percentile (the max is suiteLoopDelayMaxMs). */
  loopDelayP50Ms: number;
  loopDelayP99Ms: number;
  /** The suite process's memory at the end of the round (MB). */
  rssMb: number;
  heapUsedMb: number;
  /** The fault proxy, at its largest during the round: open connections and bytes held. */
  proxyConnectionsMax: number;
  proxyBufferedKbMax: number;
  /**
   * TCP listen-queue overflows in this network namespace during the round (the proxy's and the API
   * server's listeners; a full accept queue shows at clients as connect timeouts). Undefined where
   * /proc/net/netstat cannot be read.
   */
  listenOverflows?: number;
  /** The machine's 1-minute load average at the end (2 cores: above 2, processes wait for a CPU). */
  loadAvg1: number;
}

/** TcpExt counters from /proc/net/netstat text (header line of names, then a line of values). */
export function parseTcpExt(netstat: string): Map<string, number> {
  const lines = netstat.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const out = new Map<string, number>();
  if (lines.length < 2) return out;
  const names = lines[0]!.split(/\s+/).slice(1);
  const values = lines[1]!.split(/\s+/).slice(1);
  names.forEach((n, i) => {
    const v = Number(values[i]);
    if (n !== '' && Number.isFinite(v)) out.set(n, v);
  });
  return out;
}

function listenOverflowsNow(): number | undefined {
  try {
    return parseTcpExt(readFileSync('/proc/net/netstat', 'utf8')).get('ListenOverflows');
  } catch {
    return undefined;
  }
}

/** Watches the suite's health from construction to finish(). */
export class HealthProbe {
  readonly #loop: { percentile(p: number): number };
  readonly #proxy: { connections: number; bufferedBytes: number };
  readonly #overflowsAtStart = listenOverflowsNow();
  #connectionsMax = 0;
  #bufferedMax = 0;

  constructor(loop: { percentile(p: number): number }, proxy: { connections: number; bufferedBytes: number }) {
    this.#loop = loop;
    this.#proxy = proxy;
    this.sample();
  }

  /** Notes the proxy's state now (call it as often as the round looks at anything). */
  sample(): void {
    this.#connectionsMax = Math.max(this.#connectionsMax, this.#proxy.connections);
    this.#bufferedMax = Math.max(this.#bufferedMax, this.#proxy.bufferedBytes);
  }

  finish(): SuiteHealth {
    this.sample();
    const mem = process.memoryUsage();
    const overflows = listenOverflowsNow();
    return {
      loopDelayP50Ms: Math.round(this.#loop.percentile(50) / 1e6),
      loopDelayP99Ms: Math.round(this.#loop.percentile(99) / 1e6),
      rssMb: Math.round(mem.rss / 1e6),
      heapUsedMb: Math.round(mem.heapUsed / 1e6),
      proxyConnectionsMax: this.#connectionsMax,
      proxyBufferedKbMax: Math.round(this.#bufferedMax / 1024),
      ...(overflows !== undefined && this.#overflowsAtStart !== undefined ? { listenOverflows: overflows - this.#overflowsAtStart } : {}),
      loadAvg1: Math.round(loadavg()[0]! * 10) / 10,
    };
  }
}
