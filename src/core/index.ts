// The pure core of the controller: observed snapshot → desired state → writes.
// No I/O, no clock (time is `snapshot.now`), no randomness, no memory between calls: the same input
// always gives the same plans, so a new leader continues exactly where the old one stopped.

export type * from './types.ts';
export { DEFAULT_CORE_OPTIONS } from './types.ts';
export { reconcile, computeDesired, resolveOptions, planNodes } from './reconcile.ts';
export { statusEqual, cegpUpToDate } from './compare.ts';
export { instanceName, isNodeReady, isPodReady, isNodeCordoned, isBeingDeleted, sha256Hex } from './util.ts';
export { matchesLabelSelector, matchesNodeSelector, NodeLabelIndex } from './selectors.ts';
export { buildNodeStates, ineligibleReasons, heartbeatLive, noEligibleMessage, reasonText, type NodeState } from './eligibility.ts';
export { analyseGateway, analysePolicy, MAX_GATEWAY_NAME, type GatewayInfo, type PolicyInfo } from './validate.ts';
export { renderCEGP, isOurCEGP } from './render.ts';
export { planGateway, gatewayRefs, type GatewayInputs, type GatewayPlan, type GatewayWrites } from './gateway.ts';
export { planNode, type NodeInputs, type NodePlan } from './labels.ts';
export { settleElections, planInOrder, nodeContribution, agentCanAct, assembleWrites, desiredOf, metricsOf, type Leftovers } from './combine.ts';
