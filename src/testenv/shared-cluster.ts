// One API server for a whole test file: started before its first test, stopped after its last
// (node:test's before/after hooks), with a client for it. Files that need more than that (CRDs, a
// namespace, other users) start their own with startTestCluster.

import { after, before } from 'node:test';
import { KubeClient } from '../kube/client.ts';
import { startTestCluster, type TestCluster, type TestClusterOptions } from './apiserver.ts';

export interface SharedCluster {
  /** Set once the file's `before` hook has run. */
  cluster: TestCluster;
  client: KubeClient;
}

export function useTestCluster(opts: TestClusterOptions = {}): SharedCluster {
  const shared = {} as SharedCluster;
  before(async () => {
    shared.cluster = await startTestCluster(opts);
    shared.client = new KubeClient(shared.cluster.kubeConfig);
  });
  after(async () => {
    await shared.cluster?.stop();
  });
  return shared;
}
