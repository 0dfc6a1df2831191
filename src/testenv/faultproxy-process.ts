// The parent's side of faultproxy-child.ts: a TCP fault proxy in a child process of its own, for a caller
// whose event loop is too busy to keep a proxy's timing (the failover bench). Same faults as FaultProxy
// (rules without a random source) and seeded spike schedules; every call is a round trip to the child.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FaultRule, FaultTarget, SpikeRecord, SpikeSchedule } from './faultproxy.ts';
import { HelperProcess } from './helper-process.ts';

const CHILD = fileURLToPath(new URL('./faultproxy-child.ts', import.meta.url));

/** A spike schedule the child can repeat: `seed` replaces the random source. */
export type SeededSpikeSchedule = Omit<SpikeSchedule, 'random'> & { seed: number };

export class FaultProxyProcess {
  readonly #helper: HelperProcess;
  readonly address: { host: string; port: number };
  readonly #spikeRecords: Map<string, SpikeRecord[]>;
  #ids = 0;

  private constructor(helper: HelperProcess, address: { host: string; port: number }, spikeRecords: Map<string, SpikeRecord[]>) {
    this.#helper = helper;
    this.address = address;
    this.#spikeRecords = spikeRecords;
  }

  /** Starts the child, listening on `listen.host` (any free port) and forwarding to `target`. */
  static async start(target: FaultTarget, listen: { host: string; port?: number }): Promise<FaultProxyProcess> {
    let address: { host: string; port: number } | undefined;
    // Each spike arrives as an event when it ends; the map is shared with the instance made below.
    const spikeRecords = new Map<string, SpikeRecord[]>();
    const helper = await HelperProcess.start('(root namespace)', spawn(process.execPath, [CHILD], { stdio: ['pipe', 'pipe', 'pipe'] }), 'fault proxy', (m) => {
      if (m.ev === 'listening') address = { host: String(m.host), port: Number(m.port) };
      else if (m.ev === 'spike') spikeRecords.get(String(m.id))?.push({ start: Number(m.start), end: Number(m.end), delayMs: Number(m.delayMs) });
    });
    try {
      await helper.command('start', { target, listen });
    } catch (err) {
      await helper.close();
      throw err;
    }
    // Events precede their command's "ok" on the child's stdout: the address is known here.
    return new FaultProxyProcess(helper, address!, spikeRecords);
  }

  /** `https://host:port` of the proxy, for a kubeconfig. */
  get url(): string {
    return `https://${this.address.host.includes(':') ? `[${this.address.host}]` : this.address.host}:${this.address.port}`;
  }

  /** Activates a rule until the returned function is called. */
  async add(rule: FaultRule): Promise<() => Promise<void>> {
    if (rule.kind === 'status') throw new Error('fault proxy process: status rules need HTTP mode (in-process FaultProxy)');
    const id = `r${++this.#ids}`;
    await this.#helper.command('add', { id, rule });
    return () => this.#helper.command('remove', { id });
  }

  /**
   * Runs `schedule` in the child until `stop()`. `record` fills as each spike ends (start/end in ms since
   * the epoch, the child's clock); stop() resolves once the last one is in.
   */
  async spikes(schedule: SeededSpikeSchedule): Promise<{ record: readonly SpikeRecord[]; stop: () => Promise<SpikeRecord[]> }> {
    const id = `s${++this.#ids}`;
    const record: SpikeRecord[] = [];
    this.#spikeRecords.set(id, record);
    await this.#helper.command('spikes', { ...schedule, id });
    return {
      record,
      stop: async () => {
        // The child emits the last spike's event before the command's "ok".
        await this.#helper.command('stopSpikes', { id });
        this.#spikeRecords.delete(id);
        return record;
      },
    };
  }

  /** Ends the child (it closes the listener and every proxied connection). */
  close(): Promise<void> {
    return this.#helper.close();
  }
}
