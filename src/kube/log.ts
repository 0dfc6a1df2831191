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

/**
 * The fields worth logging from an error (ApiException bodies carry the server's reason). fetch's
 * network errors all read "fetch failed"; what happened is in their `cause` (a connect timeout, a
 * reset, a TLS failure), so that is logged too: a chaos run once showed minutes of "fetch failed"
 * whose cause the logs could not tell.
 */
export function errFields(err: unknown): Record<string, unknown> {
  if (err && typeof err === 'object') {
    const e = err as { message?: unknown; code?: unknown; body?: unknown; name?: unknown; cause?: unknown };
    const out: Record<string, unknown> = { err: String(e.message ?? err) };
    if (typeof e.code === 'number' || typeof e.code === 'string') out.code = e.code;
    if (e.body !== undefined) {
      const body = typeof e.body === 'string' ? e.body : JSON.stringify(e.body);
      out.body = body.length > 1000 ? body.slice(0, 1000) + '…' : body;
    }
    const cause = describeCause(e.cause);
    if (cause !== undefined) out.cause = cause;
    return out;
  }
  return { err: String(err) };
}

/** `code: message` of an error's cause chain (at most 3 deep), e.g. "UND_ERR_CONNECT_TIMEOUT: Connect Timeout Error". */
function describeCause(cause: unknown, depth = 0): string | undefined {
  if (cause === undefined || cause === null || depth >= 3) return undefined;
  if (typeof cause !== 'object') return String(cause);
  const c = cause as { message?: unknown; code?: unknown; cause?: unknown };
  const here = [typeof c.code === 'string' || typeof c.code === 'number' ? String(c.code) : undefined, c.message !== undefined ? String(c.message) : undefined]
    .filter((x) => x !== undefined && x !== '')
    .join(': ');
  const deeper = describeCause(c.cause, depth + 1);
  return [here || String(cause), deeper].filter((x) => x !== undefined).join(' ← ');
}
