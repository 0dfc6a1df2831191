// An `events.k8s.io/v1` event recorder. Identical events (same object, type, reason, action and
// note) within the series window become one Event with a `series` count instead of a new object
// each time, as client-go's events recorder does, so a condition that persists does not flood etcd.

import type { KubeClient } from './client.ts';
import { isObjectGone } from './client.ts';
import { errFields, silentLogger, type Logger } from './log.ts';
import { events } from './resources.ts';
import { microTime } from './time.ts';

export interface EventRegarding {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
}

export interface EventRecorderOptions {
  /** e.g. `network.deckhouse.io/egressgw-controller` (a qualified name). */
  reportingController: string;
  /** This process, e.g. the pod name. */
  reportingInstance: string;
  logger?: Logger;
  now?: () => number;
  /** Identical events within this window join a series (client-go: 6 min). */
  seriesWindowMs?: number;
  /** Within a series, do not write more often than this; the count still goes up. */
  minSeriesUpdateMs?: number;
}

interface SeriesState {
  name: string;
  namespace: string;
  count: number;
  lastObserved: number;
  lastWritten: number;
}

const NOTE_MAX = 1024;

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly opts: Required<Omit<EventRecorderOptions, 'logger'>>;
  private readonly log: Logger;
  private readonly series = new Map<string, SeriesState>();

  constructor(client: KubeClient, opts: EventRecorderOptions) {
    this.client = client;
    this.log = (opts.logger ?? silentLogger).child({ component: 'events' });
    this.opts = {
      reportingController: opts.reportingController,
      reportingInstance: opts.reportingInstance.slice(0, 128),
      now: opts.now ?? Date.now,
      seriesWindowMs: opts.seriesWindowMs ?? 6 * 60_000,
      minSeriesUpdateMs: opts.minSeriesUpdateMs ?? 30_000,
    };
  }

  /**
   * Record an event. Returns 'created', 'series' (an existing event's count was bumped) or
   * 'suppressed' (counted, written later). Throws on API errors other than a vanished series event.
   */
  async record(regarding: EventRegarding, type: 'Normal' | 'Warning', reason: string, note: string, action = reason): Promise<'created' | 'series' | 'suppressed'> {
    const now = this.opts.now();
    this.gc(now);
    const namespace = regarding.namespace || 'default';
    const key = JSON.stringify([regarding.apiVersion, regarding.kind, namespace, regarding.name, regarding.uid ?? '', type, reason, action, note]);
    const prev = this.series.get(key);
    if (prev && now - prev.lastObserved < this.opts.seriesWindowMs) {
      prev.count++;
      prev.lastObserved = now;
      if (now - prev.lastWritten < this.opts.minSeriesUpdateMs) return 'suppressed';
      try {
        await this.client.mergePatch(events(prev.namespace), prev.name, {
          series: { count: prev.count, lastObservedTime: microTime(now) },
        });
        prev.lastWritten = now;
        return 'series';
      } catch (err) {
        if (!isObjectGone(err, prev.name)) throw err;
        // The event expired (TTL) or was deleted: start a new one.
        this.series.delete(key);
      }
    }
    const name = `${regarding.name}.${(BigInt(now) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000))).toString(16)}`;
    const body = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace },
      eventTime: microTime(now),
      reportingController: this.opts.reportingController,
      reportingInstance: this.opts.reportingInstance,
      action: action.slice(0, 128),
      reason: reason.slice(0, 128),
      type,
      note: note.length > NOTE_MAX ? note.slice(0, NOTE_MAX - 1) + '…' : note,
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        name: regarding.name,
        ...(regarding.namespace ? { namespace: regarding.namespace } : {}),
        ...(regarding.uid ? { uid: regarding.uid } : {}),
      },
    };
    await this.client.create(events(namespace), body);
    this.series.set(key, { name, namespace, count: 1, lastObserved: now, lastWritten: now });
    this.log.debug({ regarding: `${regarding.kind}/${regarding.name}`, reason, type }, note);
    return 'created';
  }

  /** `record` that logs instead of throwing: an event is never worth failing a reconcile for. */
  async tryRecord(regarding: EventRegarding, type: 'Normal' | 'Warning', reason: string, note: string, action?: string): Promise<boolean> {
    try {
      await this.record(regarding, type, reason, note, action);
      return true;
    } catch (err) {
      this.log.warn({ ...errFields(err), reason, regarding: `${regarding.kind}/${regarding.name}` }, 'failed to record event');
      return false;
    }
  }

  private gc(now: number): void {
    if (this.series.size < 256) return;
    for (const [k, s] of this.series) if (now - s.lastObserved >= this.opts.seriesWindowMs) this.series.delete(k);
  }
}
