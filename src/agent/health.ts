// /healthz, /readyz and /metrics on one small HTTP server (probes per reference §4.9, port 9870).
//
// /healthz: the process is alive and its event loop turns (a frozen agent does not answer at all).
// /readyz: honest (fixes D15): the last heartbeat renewal is recent AND a raw frame can be sent.

import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  ok: boolean;
  /** One line per failed check. */
  reasons: string[];
}

export interface HealthServerOptions {
  host: string;
  port: number;
  registry: Registry;
  ready: () => ReadinessCheck;
}

export async function startHealthServer(o: HealthServerOptions): Promise<{ server: Server; address: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/healthz' || path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const r = o.ready();
      res.writeHead(r.ok ? 200 : 503, { 'content-type': 'text/plain' }).end(r.ok ? 'ok\n' : r.reasons.join('\n') + '\n');
    } else if (path === '/metrics') {
      o.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': o.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  const address = typeof a === 'object' && a ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : String(a);
  return {
    server,
    address,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/**
 * The /readyz rule as a pure function: renewal recent (within fenceAfter), frames can be sent, and the
 * agent may take VIPs (not in the hold after its renewals (re)started, agent.ts).
 */
export function readiness(input: { heartbeatEnabled: boolean; sinceLastRenewalMs: number; fenceAfterMs: number; frames: { ok: boolean; reason?: string }; holding?: string }): ReadinessCheck {
  const reasons: string[] = [];
  if (input.heartbeatEnabled && !(input.sinceLastRenewalMs < input.fenceAfterMs)) {
    reasons.push(Number.isFinite(input.sinceLastRenewalMs)
      ? `heartbeat: last successful renewal ${Math.round(input.sinceLastRenewalMs)}ms ago (limit ${input.fenceAfterMs}ms)`
      : 'heartbeat: no successful renewal yet');
  } else if (input.heartbeatEnabled && input.holding !== undefined) {
    reasons.push(`heartbeat: ${input.holding}`);
  }
  if (!input.frames.ok) reasons.push(`frames: cannot send raw frames: ${input.frames.reason ?? 'unknown'}`);
  return { ok: reasons.length === 0, reasons };
}
