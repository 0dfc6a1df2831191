// The control plane of the test environment: the test API server, seeded with nodes as API objects
// (seed.ts), and the controller running in this process. No network: env.ts adds the network namespaces
// and the agents around it, and `egressgw lab --no-network` uses it alone (VIP-mode gateways then stay
// not Ready, having no live agent; PrimaryIP-mode gateways get an active node).
//
// startController() is separate so that a topology can run it more than once (replicas) or against
// another address (a proxy in front of the API server).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { runController, type PassInfo } from '../controller/controller.ts';
import { parseControllerArgs } from '../controller/options.ts';
import { KubeClient, type KubeConfig } from '../kube/client.ts';
import { errFields, type Logger } from '../kube/log.ts';
import { startTestCluster, type TestCluster } from './apiserver.ts';
import { Cleanups } from './cleanups.ts';
import { SEED_NAMESPACES, seedCluster, setNodeReady, type SeedNode } from './seed.ts';

export interface ControllerOptions {
  /** Extra flags (parsed by parseControllerArgs after `--no-leader-elect --metrics-addr=`). */
  args?: string[];
  /** Called for every controller pass (timestamps for tests and the bench). */
  onPass?: (info: PassInfo) => void;
  /** Its log file (pino, debug level). */
  logFile: string;
}

export interface RunningController {
  /** Stops it and waits until it has stopped. */
  stop(): Promise<void>;
}

/**
 * Runs the controller in this process (no leader election, no metrics listener unless `args` say
 * otherwise) and resolves once its caches are synced. Rejects if it fails before that.
 */
export async function startController(kubeConfig: KubeConfig, opts: ControllerOptions): Promise<RunningController> {
  const ac = new AbortController();
  const log = pino({ level: 'debug' }, pino.destination({ dest: opts.logFile, sync: false, mkdir: true }));
  const options = parseControllerArgs(['--no-leader-elect', '--metrics-addr=', ...(opts.args ?? [])]);
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  let failed: unknown;
  const done = runController(options, { signal: ac.signal, kubeConfig, logger: log, onPass: opts.onPass, onReady: () => ready() })
    .catch((err: unknown) => {
      failed = err;
      log.error(errFields(err), 'controller failed');
    });
  const stop = async (): Promise<void> => {
    ac.abort();
    await done;
    log.flush();
  };
  await Promise.race([readyP, done]);
  if (failed !== undefined) {
    await stop();
    throw failed;
  }
  return { stop };
}

export interface ControlPlaneOptions {
  /** The nodes to create as API objects. */
  nodes: readonly SeedNode[];
  /** Labels every node gets besides the gateway-node label. */
  extraNodeLabels?: Record<string, string>;
  /** Where the API server listens (default loopback); it is also in its certificate. */
  bindAddress?: string;
  /** Run the controller (default true). */
  controller?: boolean;
  controllerArgs?: string[];
  onPass?: (info: PassInfo) => void;
  /** Directory for logs (default: a fresh temp dir, removed at stop() unless keepLogs). */
  logDir?: string;
  keepLogs?: boolean;
  /** Where progress and cleanup failures are logged (default: silent). */
  log?: Logger;
}

export interface ControlPlane {
  cluster: TestCluster;
  client: KubeClient;
  nodes: readonly SeedNode[];
  logDir: string;
  /** Marks a node NotReady (or Ready again), as the node lifecycle controller would. */
  setNodeReady(node: string, ready: boolean): Promise<void>;
  stop(): Promise<void>;
}

/** Starts the control plane. On failure, whatever was started is stopped before the error propagates. */
export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.log ?? pino({ level: 'silent' });
  const ownDir = opts.logDir === undefined;
  const logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'egressgw-lab-'));
  const cleanups = new Cleanups();
  const stop = async (): Promise<void> => {
    await cleanups.run((err) => log.warn(errFields(err), 'control plane cleanup step failed'));
    if (ownDir && !opts.keepLogs) rmSync(logDir, { recursive: true, force: true });
  };
  try {
    const cluster = await startTestCluster({
      namespaces: SEED_NAMESPACES,
      ...(opts.bindAddress ? { bindAddress: opts.bindAddress, extraSANs: [opts.bindAddress] } : {}),
    });
    cleanups.push(() => cluster.stop());
    const client = new KubeClient(cluster.kubeConfig);
    await seedCluster(cluster, client, opts.nodes, opts.extraNodeLabels);
    if (opts.controller ?? true) {
      const controller = await startController(cluster.kubeConfig, { args: opts.controllerArgs, onPass: opts.onPass, logFile: join(logDir, 'controller.log') });
      cleanups.push(() => controller.stop());
    }
    return {
      cluster,
      client,
      nodes: opts.nodes,
      logDir,
      async setNodeReady(node, ready) {
        await setNodeReady(client, { name: node, ip: opts.nodes.find((n) => n.name === node)?.ip ?? '' }, ready);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
