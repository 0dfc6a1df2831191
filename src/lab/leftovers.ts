// The last line of cleanup for `egressgw lab`: after the lab's own stop(), anything still named after
// this lab's id (namespaces, root-namespace links) or still running as our child is removed, and the
// caller says so. sweepStale() cannot do this part: it spares labs whose owner is alive, i.e. ours.

import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

async function ipOut(args: string[]): Promise<string> {
  return (await execFileAsync('ip', args, { timeout: 10_000 })).stdout;
}

/** Namespaces and root-namespace links whose names start with the lab id. */
export async function leftovers(id: string): Promise<{ namespaces: string[]; links: string[] }> {
  const namespaces = (await ipOut(['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${id}-`));
  const links = (JSON.parse(await ipOut(['-json', 'link', 'show'])) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => n.startsWith(id));
  return { namespaces, links };
}

/** Removes what leftovers() finds; returns what it had to remove. */
export async function removeLeftovers(id: string): Promise<string[]> {
  const { namespaces, links } = await leftovers(id);
  for (const l of links) await execFileAsync('ip', ['link', 'del', l]).catch(() => undefined);
  for (const ns of namespaces) await execFileAsync('ip', ['netns', 'del', ns]).catch(() => undefined);
  return [...links.map((l) => `link ${l}`), ...namespaces.map((n) => `namespace ${n}`)];
}

/** PIDs whose parent is `pid` (Linux /proc). */
export function childPids(pid = process.pid): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command name, which may itself contain spaces.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && state !== 'Z') out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}
