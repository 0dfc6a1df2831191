// `egressgw controller`: parse flags, run the controller until SIGTERM/SIGINT, then stop writing and
// release the leader Lease so the standby takes over at once.

import { UsageError } from '../term/errors.ts';
import { runUntilSignalled } from './signals.ts';
import { CONTROLLER_HELP, parseControllerArgs } from '../controller/options.ts';

export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(CONTROLLER_HELP + '\n');
    return 0;
  }
  let options;
  try {
    options = parseControllerArgs(argv);
  } catch (err) {
    throw new UsageError(`controller: ${(err as Error).message}\n\n${CONTROLLER_HELP}`);
  }
  // Loaded only now: `--help` and bad flags need neither the kube client nor prom-client.
  const { runController } = await import('../controller/controller.ts');
  await runUntilSignalled((signal) => runController(options, { signal }));
  return 0;
}
