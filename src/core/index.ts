// The pure core of the controller: observed snapshot → desired state → writes.
// No I/O, no clock (time is `snapshot.now`), no randomness: the same snapshot always gives the same
// writes, so a new leader continues exactly where the old one stopped.

export type * from './types.ts';
export { DEFAULT_CORE_OPTIONS } from './types.ts';
export { computeDesired, isOurCEGP, resolveOptions } from './desired.ts';
export { planWrites } from './plan.ts';
export { statusEqual, cegpUpToDate } from './compare.ts';
export { instanceName, isNodeReady, isPodReady, isNodeCordoned, isBeingDeleted, sha256Hex } from './util.ts';
export { matchesLabelSelector, matchesNodeSelector, NodeLabelIndex } from './selectors.ts';
export { buildNodeStates, ineligibleReasons, heartbeatLive, noEligibleMessage, reasonText, type NodeState } from './eligibility.ts';
export { analyseGateway, analysePolicy, MAX_GATEWAY_NAME, type GatewayInfo, type PolicyInfo } from './validate.ts';
export { renderCEGP } from './render.ts';
export { reconcile, createCore, type Core } from './reconcile.ts';
