// A stand-in for node agents in controller tests: for the nodes it is told are "alive", it confirms
// the instances addressed to them (Ready=True for their generation, as an agent does once the VIP is
// up) and removes the finalizer of their terminating instances (as an agent does after withdrawing
// the VIP). It is the agent's API contract only: no addresses, no frames.

import type { Fixture } from './helpers.ts';
import { INSTANCES } from '../../src/kube/resources.ts';
import { CLEAR_FINALIZERS_PATCH, mergePatchIfExists } from '../../src/kube/patch.ts';
import type { EgressGatewayInstance } from '../../src/api/types.ts';

export class FakeAgents {
  private readonly f: Fixture;
  readonly alive = new Set<string>();
  /** Nodes whose agents withdraw (finalizer) but never confirm: a stuck announcement. */
  readonly mute = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(f: Fixture) {
    this.f = f;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), 100);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const list = await this.f.client.list<EgressGatewayInstance>(INSTANCES);
      for (const inst of list.items) {
        const node = inst.spec?.nodeName ?? '';
        if (!this.alive.has(node)) continue;
        if (inst.metadata.deletionTimestamp) {
          if (inst.metadata.finalizers?.length) await mergePatchIfExists(this.f.client, INSTANCES, inst.metadata.name, CLEAR_FINALIZERS_PATCH);
          continue;
        }
        if (this.mute.has(node)) continue;
        const ready = inst.status?.conditions?.find((c) => c.type === 'Ready');
        const gen = inst.metadata.generation;
        if (ready?.status === 'True' && (inst.status?.observedGeneration ?? gen) === gen) continue;
        await this.f.confirmInstance(inst.metadata.name).catch(() => undefined);
      }
    } catch {
      // The next tick retries.
    } finally {
      this.busy = false;
    }
  }
}
