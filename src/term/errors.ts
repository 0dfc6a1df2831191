// Error conventions of every `egressgw` command (src/cli and src/lab, which import this and not each other): a UsageError (bad flags, unknown names, refused requests) is the
// user's to fix and is printed as one line with exit code 2; anything else is our bug or the
// cluster's and is printed with its message (stack only with EGRESSGW_DEBUG=1) and exit code 1.

import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.name = 'UsageError';
    this.exitCode = exitCode;
  }
}

export async function runMain(fn: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await fn();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`egressgw: ${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    const e = err as Error;
    process.stderr.write(`egressgw: ${e?.message ?? String(err)}\n`);
    if (process.env.EGRESSGW_DEBUG === '1' && e?.stack) process.stderr.write(e.stack + '\n');
    process.exitCode = 1;
  }
}

/** node:util parseArgs, with its TypeErrors turned into UsageErrors and `--help` handled. */
export function parseFlags<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  help: string,
  allowPositionals = false,
) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${help}`);
  }
  if ((parsed.values as Record<string, unknown>).help) {
    process.stdout.write(help + '\n');
    return undefined;
  }
  return parsed;
}
