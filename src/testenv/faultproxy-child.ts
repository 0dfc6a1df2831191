// Child-process entry point running a FaultProxy (faultproxy.ts) in a process of its own, so that its
// pumps and spike timers keep time when the parent's event loop is busy (the failover bench decodes a
// capture and orchestrates dozens of rounds on the same loop: an in-process proxy stalled under load and
// every agent's API requests timed out). FaultProxyProcess (faultproxy-process.ts) is the parent's side.
// One JSON command per stdin line (helper-process.ts); replies and events are JSON lines on stdout:
//   → {"seq":1,"cmd":"start","target":{"host":…,"port":…},"listen":{"host":…}}   ← {"ev":"listening","host":…,"port":…}
//   → {"seq":2,"cmd":"add","id":"r1","rule":{"kind":"cut"}}        (rules without a random source)
//   → {"seq":3,"cmd":"remove","id":"r1"}
//   → {"seq":4,"cmd":"spikes","id":"s1","seed":7,"delayMs":300,"durationMs":1000,"gapMs":{"min":2000,"max":8000}}
//   ← {"ev":"spike","id":"s1","start":…,"end":…,"delayMs":300}        (as each spike ends)
//   → {"seq":5,"cmd":"stopSpikes","id":"s1"}
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { FaultProxy, type FaultRule, type SpikeSchedule } from './faultproxy.ts';
import { emit, serveCommands, type Command } from './helper-process.ts';

let proxy: FaultProxy | undefined;
const removers = new Map<string, () => void>();
const schedules = new Map<string, () => void>();

function started(): FaultProxy {
  if (proxy === undefined) throw new Error('fault proxy child: not started');
  return proxy;
}

async function handle(c: Command): Promise<void> {
  switch (c.cmd) {
    case 'start': {
      if (proxy !== undefined) throw new Error('fault proxy child: already started');
      proxy = await FaultProxy.start(c.target as { host: string; port: number }, c.listen as { host: string; port?: number });
      emit({ ev: 'listening', ...proxy.address });
      return;
    }
    case 'add':
      removers.set(String(c.id), started().add(c.rule as FaultRule));
      return;
    case 'remove':
      removers.get(String(c.id))?.();
      removers.delete(String(c.id));
      return;
    case 'spikes': {
      // Seeded: the same seed gives the same gaps, so a run's spike schedule can be repeated.
      const g = xoroshiro128plus(Number(c.seed));
      const schedule: SpikeSchedule = {
        ...(c as unknown as Omit<SpikeSchedule, 'random' | 'onSpike'>),
        random: () => uniformFloat64(g),
        onSpike: (s) => emit({ ev: 'spike', id: c.id, ...s }),
      };
      schedules.set(String(c.id), started().spikes(schedule));
      return;
    }
    case 'stopSpikes': {
      const stop = schedules.get(String(c.id));
      if (stop === undefined) throw new Error(`fault proxy child: no spike schedule ${String(c.id)}`);
      stop();
      schedules.delete(String(c.id));
      return;
    }
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

serveCommands(handle, () => void proxy?.close());
