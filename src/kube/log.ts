// JSON logs shared by the controller, the agent and the CLI's long-running commands. One pino
// instance per process; components take a child logger so every line names where it came from.

import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function isLogLevel(s: string): s is LevelWithSilent {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

/** A JSON logger on stderr (stdout stays free for command output), ISO timestamps. */
export function createLogger(level: string = process.env.EGRESSGW_LOG_LEVEL ?? 'info', name = 'egressgw'): Logger {
  return pino(
    {
      name,
      level: isLogLevel(level) ? level : 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything: for tests and library callers that did not pass one. */
export const silentLogger: Logger = pino({ level: 'silent' });

/** The fields worth logging from an error (ApiException bodies carry the server's reason). */
export function errFields(err: unknown): Record<string, unknown> {
  if (err && typeof err === 'object') {
    const e = err as { message?: unknown; code?: unknown; body?: unknown; name?: unknown };
    const out: Record<string, unknown> = { err: String(e.message ?? err) };
    if (typeof e.code === 'number' || typeof e.code === 'string') out.code = e.code;
    if (e.body !== undefined) {
      const body = typeof e.body === 'string' ? e.body : JSON.stringify(e.body);
      out.body = body.length > 1000 ? body.slice(0, 1000) + '…' : body;
    }
    return out;
  }
  return { err: String(err) };
}
