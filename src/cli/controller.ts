// Placeholder until the controller command lands; it refuses clearly instead of pretending to work.
import { UsageError } from './errors.ts';

export async function run(_argv: string[]): Promise<number> {
  throw new UsageError('"controller" is not available in this build yet', 1);
}
