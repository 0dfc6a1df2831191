// The one timing rule the agent and the controller share (issue 10; agent options, controller
// heartbeat tracker).
//
// The agent's kernel switch for a VIP (src/agent/fence.ts) stays open until S + fenceAfter, where S is
// the moment the agent *sent* its last renewal that the API server accepted; each acknowledged renewal
// moves it, as long as the previous deadline had not passed (a gap means the agent fenced and starts
// over from a fresh list). The controller declares the node dead at O + lease, where O is when *it*
// observed the Lease change, on its own clock. A renewal is accepted after it is sent and observed
// after it is accepted, so S ≤ O for every renewal, and then
//
//     switch closed by       S + fenceAfter  ≤  O + fenceAfter  <  O + lease   = node declared dead
//
// whenever fenceAfter + margin ≤ lease. This holds for kill -9 and SIGSTOP (nobody moves the deadline)
// and for an API cut (no renewal is acknowledged), however late the renewals or their answers are,
// and it does not involve the renew interval: the deadline is tied to the same renewal the controller
// counts from, not to the moment of the failure. The margin covers what the inequality leaves out:
//   - the kernel's timer tick (nftables timeouts run on jiffies: 4 ms at HZ=250, 10 ms at HZ=100);
//   - a renewal the agent saw acknowledged but the controller has not observed yet when it declares the
//     node dead (its watch lags): safe while that lag stays below lease − fenceAfter, which the margin
//     keeps at 100 ms or more.
// The renew interval matters for liveness instead: an answer must come back within fenceAfter − renew
// interval after the previous renewal was sent, or the agent fences a healthy node, and the controller
// must see a change within lease, or it fails over a healthy node (see the agent's --help).

/** Least lease − fenceAfter the agent accepts and the controller enforces. */
export const FENCE_MARGIN_MS = 100;

/**
 * How long the controller trusts one renewal of a heartbeat: the agent's lease, but never less than its
 * fence-after plus the margin (an agent that did not check its flags, or an older one, cannot make the
 * controller fail it over while its switch may still be open).
 */
export function trustedLeaseMs(leaseMs: number, fenceAfterMs: number | undefined): number {
  return fenceAfterMs === undefined ? leaseMs : Math.max(leaseMs, fenceAfterMs + FENCE_MARGIN_MS);
}
