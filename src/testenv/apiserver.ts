// Test cluster harness: etcd + a real Kubernetes API server on loopback, for integration tests and
// `egressgw lab`. Start one per test file (startup takes a couple of seconds):
//
//   const cluster = await startTestCluster({ crds: 'deploy/crds' });
//   after(() => cluster.stop());
//
// By default the server is our own (testenv/apiserver, built by scripts/build-apiserver.ts). When
// KUBEBUILDER_ASSETS names a directory with upstream `kube-apiserver` and `etcd`, those are used.
//
// Identity: with our server, a bearer token is taken as the user name ("Bearer egressgw-agent" is
// user egressgw-agent; everything is allowed). `clientFor(user)` builds such a client, so the audit
// log (auditLogPath, one JSON event per line) records which identity did what.
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { createServer, isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ApiextensionsV1Api, CoreV1Api, KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { ensureApiserverBinaries } from './apiserver-build.ts';

export interface TestClusterOptions {
  /** Address the API server listens on (default 127.0.0.1). Use 0.0.0.0 or a host IP so agents in network namespaces can reach it. */
  bindAddress?: string;
  /** Extra IPs or DNS names for the serving certificate. */
  extraSANs?: string[];
  /** CRD manifests (directories of .yaml/.yml/.json, or files) to install and wait for before returning. */
  crds?: string | string[];
  /** Namespaces to create besides default, kube-system, kube-public and kube-node-lease. */
  namespaces?: string[];
  /** Users that `clientFor` may be asked for (needed only with KUBEBUILDER_ASSETS, whose token file is static). */
  users?: string[];
  /** Progress and diagnostics (default: stderr when EGRESSGW_TESTENV_VERBOSE is set, else silent). */
  log?: (line: string) => void;
  /** Keep the temporary directory after stop (also EGRESSGW_KEEP_TESTENV=1). */
  keep?: boolean;
}

export interface AuditEvent {
  verb: string;
  user: { username: string; groups?: string[] };
  impersonatedUser?: { username: string };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string; apiGroup?: string; apiVersion?: string };
  responseStatus?: { code?: number };
  requestURI: string;
  stage: string;
  /** RFC 3339 with microseconds: when the server received the request, and when this stage was reached. */
  requestReceivedTimestamp?: string;
  stageTimestamp?: string;
}

/**
 * The audit log's files, oldest first: the server's log backend rotates the file at 100 MB (lumberjack:
 * `audit-<time>.log` beside it, a fresh `audit.log`), which a long run of tests on one server reaches.
 */
export function auditLogFiles(auditLogPath: string): string[] {
  const dir = dirname(auditLogPath);
  const name = basename(auditLogPath, '.log');
  const rotated = existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(`${name}-`) && f.endsWith('.log')).sort() : [];
  return [...rotated.map((f) => join(dir, f)), ...(existsSync(auditLogPath) ? [auditLogPath] : [])];
}

export interface TestCluster {
  /** https://127.0.0.1:PORT (or the bind address) */
  server: string;
  kubeconfigPath: string;
  /** Admin client configuration (user "admin"). */
  kubeConfig: KubeConfig;
  auditLogPath: string;
  /** Temporary directory holding etcd data, certificates, logs. */
  dir: string;
  /** 'egressgw' for our server, 'upstream' with KUBEBUILDER_ASSETS. */
  flavor: 'egressgw' | 'upstream';
  /** A client configuration that authenticates as `user` (bearer token = user name). */
  clientFor(user: string): KubeConfig;
  /** Writes a kubeconfig for `user` and returns its path. */
  kubeconfigFor(user: string): string;
  /** Server-side applies every CustomResourceDefinition in the given files/directories and waits until Established. Returns their names. */
  applyCRDs(dirOrFiles: string | string[]): Promise<string[]>;
  /**
   * Compacts etcd at its current revision and restarts etcd, so the API server's watches must resume
   * from a compacted revision: its watch caches relist and every client watch older than that gets
   * 410 Gone. Returns the compacted revision.
   */
  compactEtcd(): Promise<number>;
  /** Parsed audit events so far. */
  auditEvents(): AuditEvent[];
  /** The running etcd and API server processes (a chaos test signals them: SIGSTOP, SIGCONT, SIGKILL). */
  processes(): { etcd: ChildProcess; apiserver: ChildProcess };
  /**
   * Stops the API server (SIGTERM, or SIGKILL with `kill`), waits `downMs`, starts it again on the same
   * address, port, certificate and audit log, and waits until it is ready.
   */
  restartApiServer(opts?: { kill?: boolean; downMs?: number }): Promise<void>;
  /** The same for etcd, keeping its data (the API server reconnects by itself). */
  restartEtcd(opts?: { kill?: boolean; downMs?: number }): Promise<void>;
  /** Our server's certificate chain and key and the CA that verifies it (for a TLS-terminating proxy). */
  servingTLS(): { cert: Buffer; key: Buffer; ca: Buffer };
  stop(): Promise<void>;
}

const live = new Set<() => void>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  const cleanupAll = () => {
    for (const c of [...live]) c();
  };
  process.on('exit', cleanupAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      cleanupAll();
      process.off(sig, handler);
      process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

export async function startTestCluster(opts: TestClusterOptions = {}): Promise<TestCluster> {
  const log = opts.log ?? (process.env.EGRESSGW_TESTENV_VERBOSE ? (l: string) => process.stderr.write(`${l}\n`) : () => {});
  const keep = opts.keep ?? process.env.EGRESSGW_KEEP_TESTENV === '1';
  const assets = process.env.KUBEBUILDER_ASSETS;
  const upstream = !!assets && existsSync(join(assets, 'kube-apiserver')) && existsSync(join(assets, 'etcd'));
  let etcdBin: string;
  let apiserverBin: string;
  if (upstream) {
    etcdBin = join(assets, 'etcd');
    apiserverBin = join(assets, 'kube-apiserver');
  } else {
    const bins = await ensureApiserverBinaries({ log: (l) => process.stderr.write(`${l}\n`) });
    etcdBin = bins.etcd;
    apiserverBin = bins.apiserver;
  }

  installExitHooks();
  const dir = mkdtempSync(join(tmpdir(), 'egressgw-testenv-'));
  const procs: ChildProcess[] = [];
  let stopped = false;
  const killAll = () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };
  live.add(killAll);

  const bindAddress = opts.bindAddress ?? '127.0.0.1';
  const host = bindAddress === '0.0.0.0' || bindAddress === '::' ? '127.0.0.1' : bindAddress;
  const auditLogPath = join(dir, 'audit.log');
  const kubeconfigPath = join(dir, 'kubeconfig');

  try {
    // etcd on free loopback ports; restartable on the same ports and data for compactEtcd(). A free port
    // is found by binding and releasing it, so another process can take it before etcd binds: then etcd
    // exits ("address already in use") and we try again with fresh ports and a fresh data dir.
    let etcdURL = '';
    let etcdArgs: string[] = [];
    const choosePorts = async (attempt: number) => {
      const [clientPort, peerPort] = [await freePort(), await freePort()];
      etcdURL = `http://127.0.0.1:${clientPort}`;
      etcdArgs = [
        '--name=testenv',
        `--data-dir=${join(dir, attempt === 1 ? 'etcd' : `etcd-${attempt}`)}`,
        `--listen-client-urls=${etcdURL}`,
        `--advertise-client-urls=${etcdURL}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=testenv=http://127.0.0.1:${peerPort}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ];
    };
    const startEtcd = async () => {
      const p = startProcess(etcdBin, etcdArgs, join(dir, 'etcd.log'), procs);
      await waitFor('etcd /health', async () => (await httpGet(`${etcdURL}/health`)).status === 200, 30_000, p, join(dir, 'etcd.log'));
      return p;
    };
    let etcd: ChildProcess | undefined;
    for (let attempt = 1; etcd === undefined; attempt++) {
      await choosePorts(attempt);
      try {
        etcd = await startEtcd();
      } catch (err) {
        // Most likely the port race above; a real problem fails all three attempts with etcd's log.
        if (attempt >= 3) throw err;
        log(`testenv: etcd did not start (${(err as Error).message.split('\n')[0]}); retrying with new ports`);
      }
    }
    log(`testenv: etcd on ${etcdURL}`);

    let apiserver: ChildProcess;
    let server: string;
    let ca: Buffer;
    /** Starts the API server again with the arguments it runs with (same port, data and audit log). */
    let respawnApiserver: () => ChildProcess;
    if (!upstream) {
      const args = [
        `--etcd-servers=${etcdURL}`,
        `--bind-address=${bindAddress}`,
        '--secure-port=0',
        `--data-dir=${join(dir, 'apiserver')}`,
        `--kubeconfig-out=${kubeconfigPath}`,
        `--audit-log-path=${auditLogPath}`,
        `--parent-pid=${process.pid}`,
      ];
      for (const s of opts.extraSANs ?? []) args.push(`--extra-san=${s}`);
      for (const n of opts.namespaces ?? []) args.push(`--namespace=${n}`);
      apiserver = startProcess(apiserverBin, args, join(dir, 'apiserver.log'), procs);
      const line = await waitForLine(apiserver, /serving on (https:\/\/\S+)/, 60_000, join(dir, 'apiserver.log'));
      server = line[1]!;
      ca = Buffer.from(new KubeConfigReader(kubeconfigPath).caData(), 'base64');
      const again = args.map((a) => (a === '--secure-port=0' ? `--secure-port=${new URL(server).port}` : a));
      respawnApiserver = () => startProcess(apiserverBin, again, join(dir, 'apiserver.log'), procs);
    } else {
      let args: string[];
      ({ apiserver, server, ca, args } = await startUpstream(apiserverBin, dir, etcdURL, bindAddress, host, kubeconfigPath, auditLogPath, opts, procs));
      respawnApiserver = () => startProcess(apiserverBin, args, join(dir, 'apiserver.log'), procs);
    }
    const apiserverReady = (what: string) =>
      waitFor(what, async () => (await httpGet(`${server}/readyz`, ca)).status === 200, 60_000, apiserver, join(dir, 'apiserver.log'));
    await apiserverReady(`${server}/readyz`);
    log(`testenv: API server ready at ${server} (dir ${dir})`);

    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);
    if (upstream) {
      // Our server creates these itself (--namespace); kube-apiserver needs them created.
      const core = kubeConfig.makeApiClient(CoreV1Api);
      for (const name of opts.namespaces ?? []) {
        await core.createNamespace({ body: { metadata: { name } } }).catch((e: { code?: number }) => {
          if (e.code !== 409) throw e;
        });
      }
    }

    const clientFor = (user: string): KubeConfig => {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'egressgw-test', server, caData: ca.toString('base64') }],
        users: [{ name: user, token: user }],
        contexts: [{ name: user, cluster: 'egressgw-test', user }],
        currentContext: user,
      });
      return kc;
    };

    const cluster: TestCluster = {
      server,
      kubeconfigPath,
      kubeConfig,
      auditLogPath,
      dir,
      flavor: upstream ? 'upstream' : 'egressgw',
      clientFor,
      kubeconfigFor(user) {
        const path = join(dir, `kubeconfig-${user.replace(/[^A-Za-z0-9_.-]/g, '_')}`);
        writeFileSync(path, clientFor(user).exportConfig());
        return path;
      },
      applyCRDs: (d) => applyCRDs(kubeConfig, d),
      async compactEtcd() {
        // Move the revision past every object's, compact there, write once more so relists land
        // strictly after the compaction, then restart etcd to break the API server's watch streams
        // (a compaction alone does not end watches that are already running).
        const marker = Buffer.from('/egressgw-testenv/compaction-marker').toString('base64');
        const put = () => httpPostJSON(`${etcdURL}/v3/kv/put`, { key: marker, value: Buffer.from(String(Date.now())).toString('base64') });
        // Two writes: a cacher resumes its etcd watch at (its last event + 1), which must be
        // strictly below the compacted revision for etcd to refuse it.
        await put();
        const r = (await put()) as { header?: { revision?: string } };
        const rev = Number(r.header?.revision);
        if (!Number.isFinite(rev)) throw new Error(`etcd put returned no revision: ${JSON.stringify(r)}`);
        await httpPostJSON(`${etcdURL}/v3/kv/compaction`, { revision: String(rev), physical: true });
        await put();
        if (etcd) await stopProcess(etcd);
        etcd = await startEtcd();
        await apiserverReady(`${server}/readyz after etcd restart`);
        // The API server's watch caches now relist (answering 429 meanwhile). Wait until each one
        // has: a watch from before the compaction is then refused with 410.
        await waitForWatchCachesPast(kubeConfig, rev);
        log(`testenv: etcd compacted at revision ${rev} and restarted; watch caches relisted`);
        return rev;
      },
      processes: () => ({ etcd: etcd!, apiserver }),
      async restartApiServer(o = {}) {
        await stopProcess(apiserver, o.kill ? 0 : undefined);
        if (o.downMs) await new Promise((r) => setTimeout(r, o.downMs));
        apiserver = respawnApiserver();
        await apiserverReady(`${server}/readyz after an API server restart`);
      },
      async restartEtcd(o = {}) {
        if (etcd) await stopProcess(etcd, o.kill ? 0 : undefined);
        if (o.downMs) await new Promise((r) => setTimeout(r, o.downMs));
        etcd = await startEtcd();
        await apiserverReady(`${server}/readyz after an etcd restart`);
      },
      servingTLS() {
        if (upstream) throw new Error('servingTLS: only with our API server');
        const certs = join(dir, 'apiserver', 'certs');
        return { cert: readFileSync(join(certs, 'apiserver.crt')), key: readFileSync(join(certs, 'apiserver.key')), ca };
      },
      auditEvents() {
        return auditLogFiles(auditLogPath).flatMap((f) =>
          readFileSync(f, 'utf8')
            .split('\n')
            .filter((l) => l.trim())
            .map((l) => JSON.parse(l) as AuditEvent),
        );
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        for (const p of [...procs].reverse()) await stopProcess(p);
        live.delete(killAll);
        if (!keep) rmSync(dir, { recursive: true, force: true });
        else log(`testenv: kept ${dir}`);
      },
    };
    if (opts.crds) await cluster.applyCRDs(opts.crds);
    return cluster;
  } catch (e) {
    killAll();
    live.delete(killAll);
    throw e;
  }
}

// ---------- CRDs ----------

export function readManifests(dirOrFiles: string | string[]): KubernetesObject[] {
  const files: string[] = [];
  for (const p of Array.isArray(dirOrFiles) ? dirOrFiles : [dirOrFiles]) {
    if (statSync(p).isDirectory()) {
      for (const f of readdirSync(p).sort()) if (/\.(ya?ml|json)$/.test(f)) files.push(join(p, f));
    } else files.push(p);
  }
  const out: KubernetesObject[] = [];
  for (const f of files) {
    for (const doc of parseAllDocuments(readFileSync(f, 'utf8'))) {
      if (doc.errors.length) throw new Error(`${f}: ${doc.errors[0]!.message}`);
      const obj = doc.toJS() as KubernetesObject | null;
      if (obj && typeof obj === 'object' && obj.kind) out.push(obj);
    }
  }
  return out;
}

async function applyCRDs(kc: KubeConfig, dirOrFiles: string | string[]): Promise<string[]> {
  const crds = readManifests(dirOrFiles).filter((o) => o.kind === 'CustomResourceDefinition');
  for (const crd of crds) {
    // Raw apply: client-node's typed serializer would drop x-kubernetes-* schema keys read from YAML.
    const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${encodeURIComponent(crd.metadata!.name!)}?fieldManager=egressgw-testenv&force=true`;
    const res = await rawRequest(kc, 'PATCH', path, JSON.stringify(crd), 'application/apply-patch+yaml');
    if (res.status >= 300) throw new Error(`applying CRD ${crd.metadata!.name}: ${res.status} ${res.body}`);
  }
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const names = crds.map((c) => c.metadata!.name!);
  for (const name of names) {
    await waitFor(`CRD ${name} Established`, async () => {
      const got = await ext.readCustomResourceDefinition({ name });
      return !!got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    }, 30_000);
  }
  return names;
}

interface DiscoveryList {
  items?: { metadata: { name: string }; versions: { version: string; resources: { resource: string; verbs: string[] }[] }[] }[];
}

/** Every watchable resource's cluster-wide path, from aggregated discovery. */
export async function watchablePaths(kc: KubeConfig): Promise<string[]> {
  const accept = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList';
  const paths: string[] = [];
  for (const root of ['/api', '/apis']) {
    const res = await rawRequest(kc, 'GET', root, undefined, undefined, accept);
    if (res.status !== 200) throw new Error(`GET ${root} (aggregated discovery): ${res.status} ${res.body}`);
    for (const g of (JSON.parse(res.body) as DiscoveryList).items ?? []) {
      for (const v of g.versions) {
        const prefix = root === '/api' ? `/api/${v.version}` : `/apis/${g.metadata.name}/${v.version}`;
        for (const r of v.resources) if (r.verbs.includes('watch')) paths.push(`${prefix}/${r.resource}`);
      }
    }
  }
  return paths;
}

async function waitForWatchCachesPast(kc: KubeConfig, compacted: number): Promise<void> {
  const paths = await watchablePaths(kc);
  await Promise.all(
    paths.map((p) =>
      waitFor(`the watch cache of ${p} to relist after compaction at ${compacted}`, async () => {
        const r = await rawRequest(kc, 'GET', `${p}?watch=1&resourceVersion=${compacted - 1}&timeoutSeconds=1`);
        return r.status === 410 || /"code":\s*410/.test(r.body);
      }, 60_000),
    ),
  );
}

/**
 * One request with the client configuration's TLS and credentials, body passed through untouched
 * (for content types and fields the typed client does not carry).
 */
export async function rawRequest(kc: KubeConfig, method: string, path: string, body?: string, contentType = 'application/json', accept = 'application/json'): Promise<{ status: number; body: string }> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('kubeconfig has no current cluster');
  const opts: RequestOptions = { method, headers: { accept, ...(body !== undefined ? { 'content-type': contentType } : {}) } };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(new URL(cluster.server.replace(/\/$/, '') + path), opts, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// ---------- upstream kube-apiserver (KUBEBUILDER_ASSETS) ----------

async function startUpstream(
  bin: string,
  dir: string,
  etcdURL: string,
  bindAddress: string,
  host: string,
  kubeconfigPath: string,
  auditLogPath: string,
  opts: TestClusterOptions,
  procs: ChildProcess[],
): Promise<{ apiserver: ChildProcess; server: string; ca: Buffer; args: string[] }> {
  const port = await freePort();
  const certDir = join(dir, 'certs');
  // Static tokens: token = user name, everyone in system:masters, like our server.
  const users = new Set(['admin', ...(opts.users ?? [])]);
  writeFileSync(join(dir, 'tokens.csv'), [...users].map((u, i) => `${u},${u},${i + 1},"system:masters"`).join('\n') + '\n');
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(dir, 'audit-policy.yaml'), 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n');
  const args = [
    `--etcd-servers=${etcdURL}`,
    `--bind-address=${bindAddress}`,
    ...(isIP(host) ? [`--advertise-address=${host}`] : []),
    `--secure-port=${port}`,
    `--cert-dir=${certDir}`,
    `--token-auth-file=${join(dir, 'tokens.csv')}`,
    '--authorization-mode=AlwaysAllow',
    `--service-account-key-file=${join(dir, 'sa.pub')}`,
    `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
    '--service-account-issuer=https://kubernetes.default.svc',
    '--service-cluster-ip-range=10.0.0.0/24',
    `--audit-log-path=${auditLogPath}`,
    `--audit-policy-file=${join(dir, 'audit-policy.yaml')}`,
    '--audit-log-mode=blocking',
    '--disable-admission-plugins=ServiceAccount',
  ];
  const apiserver = startProcess(bin, args, join(dir, 'apiserver.log'), procs);
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const crt = join(certDir, 'apiserver.crt');
  await waitFor('kube-apiserver certificate', async () => existsSync(crt), 60_000, apiserver, join(dir, 'apiserver.log'));
  const ca = readFileSync(crt);
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'egressgw-test', server, caData: ca.toString('base64') }],
    users: [{ name: 'admin', token: 'admin' }],
    contexts: [{ name: 'egressgw-test', cluster: 'egressgw-test', user: 'admin', namespace: 'default' }],
    currentContext: 'egressgw-test',
  });
  writeFileSync(kubeconfigPath, kc.exportConfig());
  return { apiserver, server, ca, args };
}

// ---------- processes and polling ----------

class KubeConfigReader {
  private kc = new KubeConfig();
  constructor(path: string) {
    this.kc.loadFromFile(path);
  }
  caData(): string {
    const c = this.kc.getCurrentCluster();
    if (!c?.caData) throw new Error('kubeconfig without certificate-authority-data');
    return c.caData;
  }
}

function startProcess(bin: string, args: string[], logPath: string, procs: ChildProcess[]): ChildProcess {
  const out = createWriteStream(logPath, { flags: 'a' });
  const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  p.stdout!.pipe(out);
  p.stderr!.pipe(out);
  procs.push(p);
  return p;
}

/** SIGTERM (SIGKILL with graceMs 0), SIGKILL after `graceMs`; a stopped (SIGSTOP) process is continued first. */
async function stopProcess(p: ChildProcess, graceMs = 10_000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGCONT');
  p.kill(graceMs === 0 ? 'SIGKILL' : 'SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Polls `check` until it returns true; fails with the last error, or the process's log if it died. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number, proc?: ChildProcess, logPath?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  let delay = 25;
  for (;;) {
    if (proc && (proc.exitCode !== null || proc.signalCode !== null)) {
      throw new Error(`${what}: process exited (${proc.exitCode ?? proc.signalCode})${logPath ? `; last lines of ${logPath}:\n${tail(logPath)}` : ''}`);
    }
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message ?? last}` : ''}${logPath ? `; last lines of ${logPath}:\n${tail(logPath)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 500);
  }
}

function waitForLine(p: ChildProcess, re: RegExp, timeoutMs: number, logPath: string): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (b: Buffer) => {
      buf += b.toString();
      const m = buf.match(re);
      if (m) {
        done();
        resolve(m);
      }
    };
    const onExit = (code: number | null) => {
      done();
      reject(new Error(`API server exited (${code}) before serving; last lines of ${logPath}:\n${tail(logPath)}`));
    };
    const t = setTimeout(() => {
      done();
      reject(new Error(`API server did not report its port within ${timeoutMs} ms; last lines of ${logPath}:\n${tail(logPath)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(t);
      p.stdout!.off('data', onData);
      p.off('exit', onExit);
    };
    p.stdout!.on('data', onData);
    p.once('exit', onExit);
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function httpGet(url: string, ca?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, { method: 'GET', ca, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function httpPostJSON(url: string, body: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = httpRequest(new URL(url), { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }, timeout: 10_000 }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        if ((res.statusCode ?? 0) >= 300) reject(new Error(`POST ${url}: ${res.statusCode} ${text}`));
        else resolve(text ? JSON.parse(text) : {});
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

