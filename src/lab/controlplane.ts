// `egressgw lab` without root or `ip netns`: the control plane only. The test API server on loopback,
// the CRDs, three lab nodes as API objects (Node, CiliumNode, a Ready cilium-agent Pod each) and the
// controller in-process. No network namespaces and no agents, so nothing here can hold a VIP: VIP-mode
// gateways stay not Ready (no live agent), PrimaryIP-mode gateways get an active node.
//
// startLab (src/testenv/lab.ts) builds its network first and cannot run without it, hence this module.

import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pino } from 'pino';
import { DEFAULT_NAMESPACE } from '../api/names.ts';
import { KubeClient, isStatus, type ResourceRef } from '../kube/client.ts';
import { errFields } from '../kube/log.ts';
import { CILIUM_NODES, NODES, namespaces, pods } from '../kube/resources.ts';
import { runController } from '../controller/controller.ts';
import { parseControllerArgs } from '../controller/options.ts';
import { startTestCluster, type TestCluster } from '../testenv/apiserver.ts';
import { GATEWAY_NODE_LABEL } from '../testenv/lab.ts';
import { REPO } from './paths.ts';

export interface ControlPlaneLab {
  cluster: TestCluster;
  client: KubeClient;
  nodes: string[];
  logDir: string;
  /** Marks a node NotReady (or Ready again): the control-plane lab's way to fail a node. */
  setNodeReady(node: string, ready: boolean): Promise<void>;
  stop(): Promise<void>;
}

async function ensure(client: KubeClient, ref: ResourceRef, obj: object): Promise<void> {
  try {
    await client.create(ref, obj);
  } catch (err) {
    if (!isStatus(err, 409)) throw err;
  }
}

function nodeStatus(ip: string, ready: boolean) {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return {
    status: {
      conditions: [{
        type: 'Ready',
        status: ready ? 'True' : 'False',
        reason: ready ? 'KubeletReady' : 'NodeStatusUnknown',
        message: ready ? 'lab node (API object only)' : 'marked NotReady by egressgw lab',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      }],
      addresses: [{ type: 'InternalIP', address: ip }],
    },
  };
}

/** Starts the control-plane-only lab. On failure, whatever was started is stopped first. */
export async function startControlPlaneLab(opts: { nodes?: number; keepLogs?: boolean } = {}): Promise<ControlPlaneLab> {
  const logDir = mkdtempSync(join(tmpdir(), 'egressgw-lab-'));
  const cleanups: Array<() => Promise<void> | void> = [];
  const stopAll = async (): Promise<void> => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // best effort: the remaining steps still run
      }
    }
    cleanups.length = 0;
    if (!opts.keepLogs) rmSync(logDir, { recursive: true, force: true });
  };
  try {
    const cluster = await startTestCluster({ namespaces: [DEFAULT_NAMESPACE] });
    cleanups.push(() => cluster.stop());
    const client = new KubeClient(cluster.kubeConfig);
    await cluster.applyCRDs(join(REPO, 'deploy', 'crds'));
    await cluster.applyCRDs(join(REPO, 'test', 'fixtures', 'crds', 'cilium'));
    await ensure(client, namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: DEFAULT_NAMESPACE } });

    const names: string[] = [];
    const ipOf = (i: number): string => `198.18.0.${10 + i}`;
    for (let i = 1; i <= (opts.nodes ?? 3); i++) {
      const name = `node${i}`;
      names.push(name);
      await ensure(client, NODES, { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { [GATEWAY_NODE_LABEL]: '', 'kubernetes.io/hostname': name } } });
      await client.mergePatch(NODES, name, nodeStatus(ipOf(i), true), 'status');
      await ensure(client, CILIUM_NODES, { apiVersion: 'cilium.io/v2', kind: 'CiliumNode', metadata: { name }, spec: {} });
      const pod = `cilium-agent-${name}`;
      await ensure(client, pods(DEFAULT_NAMESPACE), {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: pod, namespace: DEFAULT_NAMESPACE, labels: { app: 'agent', module: 'cni-cilium' } },
        spec: { nodeName: name, containers: [{ name: 'cilium-agent', image: 'lab.invalid/cilium:none' }] },
      });
      await client.mergePatch(pods(DEFAULT_NAMESPACE), pod, { status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] } }, 'status');
    }

    const ac = new AbortController();
    const controllerLog = pino({ level: 'debug' }, pino.destination({ dest: join(logDir, 'controller.log'), sync: false, mkdir: true }));
    let ready!: () => void;
    const readyP = new Promise<void>((r) => (ready = r));
    let failed: unknown;
    const done = runController(parseControllerArgs(['--no-leader-elect', '--metrics-addr=']), {
      signal: ac.signal,
      kubeConfig: cluster.kubeConfig,
      logger: controllerLog,
      onReady: () => ready(),
    }).catch((err: unknown) => {
      failed = err;
      controllerLog.error(errFields(err), 'controller failed');
    });
    cleanups.push(async () => {
      ac.abort();
      await done;
      controllerLog.flush();
    });
    await Promise.race([readyP, done]);
    if (failed !== undefined) throw failed;

    return {
      cluster,
      client,
      nodes: names,
      logDir,
      async setNodeReady(node, isReady) {
        await client.mergePatch(NODES, node, nodeStatus(ipOf(names.indexOf(node) + 1), isReady), 'status');
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
