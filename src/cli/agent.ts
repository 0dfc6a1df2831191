// `egressgw agent`: parse flags, run the node agent until SIGTERM/SIGINT, then shut down gracefully
// (withdraw every VIP, delete the heartbeat Lease so the controller fails over at once).

import { UsageError, parseFlags } from '../term/errors.ts';
import { runUntilSignalled } from './signals.ts';
import { AGENT_FLAGS, AGENT_HELP, buildAgentOptions, type AgentFlagValues } from '../agent/options.ts';

export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(argv, AGENT_FLAGS, AGENT_HELP);
  if (!parsed) return 0;
  let options;
  try {
    options = buildAgentOptions(parsed.values as AgentFlagValues, process.env);
  } catch (err) {
    throw new UsageError(`agent: ${(err as Error).message}`);
  }
  // Loaded only now: the native addon and the kube client are not needed for `--help` or bad flags.
  const { runAgent } = await import('../agent/main.ts');
  await runUntilSignalled((signal) => runAgent(options, { signal }));
  // Shut down completely (VIPs withdrawn, Lease deleted, data plane kept or removed). Sockets of the
  // aborted watches may sit in the HTTP keep-alive pool for another 30 s, as long as a pod's whole
  // termination grace period: leave now rather than be killed.
  process.exit(0);
}
