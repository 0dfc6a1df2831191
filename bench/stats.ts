// Small statistics and formatting helpers shared by the benchmarks (no test-environment dependencies,
// so the controller bench loads without the network-namespace environment).

export interface Dist {
  n: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of a sorted list. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] as number;
}

export function dist(values: readonly number[]): Dist {
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
    mean: s.reduce((a, b) => a + b, 0) / (s.length || 1),
  };
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Milliseconds between two `process.hrtime.bigint()` readings. */
export function msSince(t0: bigint, t1: bigint = process.hrtime.bigint()): number {
  return Number(t1 - t0) / 1e6;
}

export const mb = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;

/** A table with aligned columns: first column left-aligned, the rest right-aligned (numbers). */
export function renderTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const cell = (s: string, i: number): string => (i === 0 ? s.padEnd(widths[i] ?? 0) : s.padStart(widths[i] ?? 0));
  const line = (r: readonly string[]): string => `| ${header.map((_, i) => cell(r[i] ?? '', i)).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|')}|`;
  return [line(header), sep, ...rows.map(line)].join('\n');
}
