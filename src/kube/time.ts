// Timestamps in the two wire formats the API server uses.

/** metav1.Time: RFC 3339, second precision (what the server would store anyway). */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * metav1.MicroTime (Lease renewTime, Event eventTime): the server parses exactly six fractional
 * digits, so the millisecond ISO form must be padded.
 */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Milliseconds since the epoch of an RFC 3339 timestamp, or undefined when absent or malformed. */
export function parseTime(s: string | undefined | null): number | undefined {
  if (!s) return undefined;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : t;
}
