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
import { KubeClient } from '../kube/client.ts';
import { errFields } from '../kube/log.ts';
import { runController } from '../controller/controller.ts';
import { parseControllerArgs } from '../controller/options.ts';
import { startTestCluster, type TestCluster } from '../testenv/apiserver.ts';
import { seedLabCluster, setLabNodeReady, LAB_NAMESPACES } from '../testenv/lab.ts';

export interface ControlPlaneLab {
  cluster: TestCluster;
  client: KubeClient;
  nodes: string[];
  logDir: string;
  /** Marks a node NotReady (or Ready again): the control-plane lab's way to fail a node. */
  setNodeReady(node: string, ready: boolean): Promise<void>;
  stop(): Promise<void>;
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
    const cluster = await startTestCluster({ namespaces: LAB_NAMESPACES });
    cleanups.push(() => cluster.stop());
    const client = new KubeClient(cluster.kubeConfig);
    const nodes = Array.from({ length: opts.nodes ?? 3 }, (_, i) => ({ name: `node${i + 1}`, ip: `198.18.0.${11 + i}` }));
    // No agents and no network here, so the seed examples may select these nodes too: their PrimaryIP
    // gateway then shows a real election on objects alone.
    await seedLabCluster(cluster, client, nodes, { 'node-role.deckhouse.io/egress': '' });

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
      nodes: nodes.map((n) => n.name),
      logDir,
      async setNodeReady(node, isReady) {
        await setLabNodeReady(client, { name: node, ip: nodes.find((n) => n.name === node)?.ip ?? '' }, isReady);
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
