// Where each resource we touch lives in the API. One table, so the controller, the agent and the CLI
// agree on paths (a typo in a plural is a 404 that looks like "object missing").

import {
  CILIUM_GROUP,
  CILIUM_VERSION,
  GROUP,
  INTERNAL_GROUP,
  PLURAL_CEGPS,
  PLURAL_CILIUM_NODES,
  PLURAL_DATAPLANES,
  PLURAL_GATEWAYS,
  PLURAL_INSTANCES,
  PLURAL_POLICIES,
  VERSION,
} from '../api/names.ts';
import type { ResourceRef } from './client.ts';

export const NODES: ResourceRef = { group: '', version: 'v1', plural: 'nodes' };
export const CILIUM_NODES: ResourceRef = { group: CILIUM_GROUP, version: CILIUM_VERSION, plural: PLURAL_CILIUM_NODES };
export const GATEWAYS: ResourceRef = { group: GROUP, version: VERSION, plural: PLURAL_GATEWAYS };
export const POLICIES: ResourceRef = { group: GROUP, version: VERSION, plural: PLURAL_POLICIES };
export const INSTANCES: ResourceRef = { group: INTERNAL_GROUP, version: VERSION, plural: PLURAL_INSTANCES };
export const DATAPLANES: ResourceRef = { group: INTERNAL_GROUP, version: VERSION, plural: PLURAL_DATAPLANES };
export const CEGPS: ResourceRef = { group: CILIUM_GROUP, version: CILIUM_VERSION, plural: PLURAL_CEGPS };

/** Pods of every namespace (the Linux data plane's agent, with a node field selector). */
export const ALL_PODS: ResourceRef = { group: '', version: 'v1', plural: 'pods' };
export const pods = (namespace: string): ResourceRef => ({ group: '', version: 'v1', plural: 'pods', namespace });
export const leases = (namespace: string): ResourceRef => ({ group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespace });
export const events = (namespace: string): ResourceRef => ({ group: 'events.k8s.io', version: 'v1', plural: 'events', namespace });
export const namespaces: ResourceRef = { group: '', version: 'v1', plural: 'namespaces' };
