// The node's conntrack table through the `conntrack` tool (Debian package conntrack): list the remapped
// connections of a VIP, seed them on the next owner. What to list and what to insert is decided in
// src/dataplane/remaps.ts; this is only the commands.

import type { SnatRemap } from '../../api/types.ts';
import { deleteArgs, getArgs, parseConntrack, remapsTo, seedArgs } from '../../dataplane/remaps.ts';
import { CommandFailed, type Runner } from '../net/exec.ts';

/** Inserts run a few at a time: a takeover waits for them, and each is one short process. */
const SEED_CONCURRENCY = 8;

export interface SeedResult {
  /** Inserted (or replaced: an entry of the same pod side with another NAT port). */
  seeded: number;
  /** Already there with the same NAT port (this node published the list itself, or seeded it before). */
  present: number;
  /** One message per entry the kernel refused. */
  failed: string[];
}

export class ConntrackTool {
  readonly #run: Runner;

  constructor(runner: Runner) {
    this.#run = runner;
  }

  /** The tool's version; throws a CommandFailed (`missing` when not installed). */
  async version(): Promise<string> {
    return (await this.#run.run('conntrack', ['--version'])).trim();
  }

  /**
   * The established TCP connections SNATed to `vip` whose port changed. The tool filters on the reply
   * destination (`-q`), so the listing holds only the VIP's connections, whatever else the node tracks.
   */
  async remapped(vip: string): Promise<SnatRemap[]> {
    const out = await this.#run.run('conntrack', ['-L', '-p', 'tcp', '--state', 'ESTABLISHED', '-q', vip]);
    return remapsTo(parseConntrack(out), vip);
  }

  /**
   * Inserts each remap as an established connection SNATed to `vip`:its port. An entry with the same
   * original tuple that is already there is left alone when it has the same NAT port (a live connection of
   * this node: the list is its own), and replaced otherwise (this node held the VIP before and kept a stale
   * one: the published list is newer than anything this node saw itself).
   */
  async seed(vip: string, remaps: readonly SnatRemap[], timeoutSeconds: number): Promise<SeedResult> {
    const result: SeedResult = { seeded: 0, present: 0, failed: [] };
    const queue = [...remaps];
    const worker = async (): Promise<void> => {
      for (let r = queue.shift(); r !== undefined; r = queue.shift()) {
        try {
          result[(await this.#insert(r, vip, timeoutSeconds)) ? 'seeded' : 'present']++;
        } catch (err) {
          result.failed.push(`${r.podIP}:${r.podPort} → ${r.serverIP}:${r.serverPort} as ${vip}:${r.natPort}: ${(err as Error).message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(SEED_CONCURRENCY, queue.length) }, worker));
    return result;
  }

  /** True: inserted or replaced; false: the same entry was there. */
  async #insert(r: SnatRemap, vip: string, timeoutSeconds: number): Promise<boolean> {
    try {
      await this.#run.run('conntrack', seedArgs(r, vip, timeoutSeconds));
      return true;
    } catch (err) {
      if (!(err instanceof CommandFailed) || !/exists/i.test(err.stderr)) throw err;
    }
    const have = remapsTo(parseConntrack(await this.#run.run('conntrack', getArgs(r))), vip);
    if (have.length === 1 && have[0]!.natPort === r.natPort) return false;
    await this.#run.run('conntrack', deleteArgs(r));
    await this.#run.run('conntrack', seedArgs(r, vip, timeoutSeconds));
    return true;
  }
}
