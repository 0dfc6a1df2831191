// Plain-text tables for the terminal (`egressgw status`, `plan`, the lab's screen). Cells may carry ANSI
// colour; widths are measured without it. src/term is shared by src/cli and src/lab and imports neither.

import { stripVTControlCharacters, styleText } from 'node:util';

export type Style = 'green' | 'red' | 'yellow' | 'dim' | 'bold' | 'cyan';

/** Colours only when asked (the caller decides: a TTY and no --no-color / NO_COLOR). */
export function painter(enabled: boolean): (style: Style, text: string) => string {
  if (!enabled) return (_style, text) => text;
  return (style, text) => styleText(style, text, { validateStream: false });
}

/** Whether colour should be used on this stream by default. */
export function colourWanted(stream: NodeJS.WriteStream, noColorFlag: boolean): boolean {
  if (noColorFlag) return false;
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  return stream.isTTY === true;
}

const width = (s: string): number => stripVTControlCharacters(s).length;

/** Columns left-aligned, two spaces apart, no trailing spaces. */
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - width(c))))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** "5s", "3m", "2h", "4d" before `now` (both in ms); '' for an unparsable time. */
export function age(time: string | undefined, now: number): string {
  if (!time) return '';
  const t = Date.parse(time);
  if (Number.isNaN(t)) return '';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}
