// The long-running commands (`agent`, `controller`) stop gracefully on the signals Kubernetes and a
// terminal send: the signal aborts the run, whose own shutdown path (withdraw VIPs, release Leases) runs.

/** Runs `fn` with a signal that SIGTERM or SIGINT aborts (reason: the signal's name); unhooks afterwards. */
export async function runUntilSignalled(fn: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!ac.signal.aborted) ac.abort(sig);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await fn(ac.signal);
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}
