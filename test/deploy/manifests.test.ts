// The install against a real API server: the CRDs of `egressgw manifests` are applied for real, then every
// manifest goes through server-side apply with dryRun=All and fieldValidation=Strict, so an unknown or
// misspelt field, a bad enum or a schema violation fails here instead of in a cluster. prometheus-operator
// is not installed there: test/fixtures/crds/monitoring holds a PrometheusRule CRD of the same structure.
//
// Server-side apply checks unknown fields only where the server knows the type's schema (CRDs); for built-in
// kinds our test server prunes them silently. So every manifest is also created with dryRun=All and
// fieldValidation=Strict, whose strict decoding refuses unknown fields of built-in kinds too.
// Every kind of the install must be served by the test server (policy/v1 PodDisruptionBudgets included):
// a kind it does not serve fails here rather than being skipped.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { startTestCluster, type TestCluster } from '../../src/testenv/apiserver.ts';
import { KubeClient, isStatus } from '../../src/kube/client.ts';
import { egressgw, ROOT } from '../cli/helpers.ts';

const NOT_SERVED: string[] = [];

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } };

interface ResourceInfo {
  plural: string;
  namespaced: boolean;
}

/** kind → plural and scope, from the server's discovery (as kubectl resolves them). */
async function discover(client: KubeClient, apiVersion: string): Promise<Map<string, ResourceInfo>> {
  const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  try {
    const list = await client.request<{ resources: Array<{ name: string; kind: string; namespaced: boolean }> }>('GET', path);
    return new Map(list.resources.filter((r) => !r.name.includes('/')).map((r) => [r.kind, { plural: r.name, namespaced: r.namespaced }]));
  } catch (err) {
    if (isStatus(err, 404)) return new Map();
    throw err;
  }
}

async function served(client: KubeClient, m: Manifest): Promise<boolean> {
  return (await discover(client, m.apiVersion)).has(m.kind);
}

async function collectionPath(client: KubeClient, m: Manifest): Promise<string> {
  const info = (await discover(client, m.apiVersion)).get(m.kind);
  assert.ok(info, `${m.apiVersion} ${m.kind} is served`);
  assert.equal(info.namespaced, m.metadata.namespace !== undefined, `${m.kind}/${m.metadata.name}: namespace set exactly when the kind is namespaced`);
  const base = m.apiVersion.includes('/') ? `/apis/${m.apiVersion}` : `/api/${m.apiVersion}`;
  return `${base}${info.namespaced ? `/namespaces/${m.metadata.namespace}` : ''}/${info.plural}`;
}

const STRICT = { fieldManager: 'egressgw-install-test', fieldValidation: 'Strict' };

/** Server-side apply (forced), dry run unless `dryRun` is false. */
async function apply(client: KubeClient, m: Manifest, dryRun: boolean): Promise<unknown> {
  return client.request('PATCH', `${await collectionPath(client, m)}/${encodeURIComponent(m.metadata.name)}`, {
    body: m,
    contentType: 'application/apply-patch+yaml',
    query: { ...STRICT, force: true, ...(dryRun ? { dryRun: 'All' } : {}) },
  });
}

/** A dry-run create: strict decoding of built-in kinds (see the header). */
async function createDryRun(client: KubeClient, m: Manifest): Promise<unknown> {
  return client.request('POST', await collectionPath(client, m), { body: m, query: { ...STRICT, dryRun: 'All' } });
}

async function render(args: string[]): Promise<Manifest[]> {
  const r = await egressgw(['manifests', ...args]);
  assert.equal(r.code, 0, r.stderr);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Manifest);
}

const describeErr = (err: unknown): string => {
  const body = (err as { body?: { message?: string } }).body;
  return body?.message ?? (err as Error).message;
};

describe('egressgw manifests against the API server', () => {
  let cluster: TestCluster;
  let client: KubeClient;

  before(async () => {
    cluster = await startTestCluster();
    client = new KubeClient(cluster.kubeConfig);
    await cluster.applyCRDs(join(ROOT, 'test', 'fixtures', 'crds', 'monitoring'));
  });
  after(async () => {
    await cluster?.stop();
  });

  for (const [name, args] of [
    ['defaults (profile cilium)', []],
    ['profile deckhouse', ['--profile', 'deckhouse']],
    ['another namespace, one replica, another image', ['--namespace', 'egress-system', '--replicas', '1', '--image', 'registry.example.com/egressgw:v9@sha256:' + 'a'.repeat(64)]],
    ['profile deckhouse, no monitoring', ['--profile', 'deckhouse', '--no-monitoring']],
  ] as Array<[string, string[]]>) {
    test(`${name}: every manifest passes strict server-side apply`, async () => {
      const manifests = await render(args);
      assert.ok(manifests.length > 10);
      // What the rest depends on is applied for real, in order: CRDs (then wait until served), the Namespace.
      for (const m of manifests.filter((x) => x.kind === 'CustomResourceDefinition')) await apply(client, m, false);
      await cluster.applyCRDs(
        // applyCRDs waits for Established; it reads files, so hand it the CRD files of the install.
        join(ROOT, 'deploy', 'crds'),
      );
      for (const m of manifests.filter((x) => x.kind === 'Namespace')) {
        await apply(client, m, true);
        await apply(client, m, false);
      }
      const failures: string[] = [];
      const notServed: string[] = [];
      for (const m of manifests) {
        if (!(await served(client, m))) {
          notServed.push(m.kind);
          continue;
        }
        const existsForReal = m.kind === 'Namespace' || m.kind === 'CustomResourceDefinition';
        for (const [how, fn] of [['apply', () => apply(client, m, true)], ...(existsForReal ? [] : [['create', () => createDryRun(client, m)]])] as Array<[string, () => Promise<unknown>]>) {
          try {
            await fn();
          } catch (err) {
            failures.push(`${how} ${m.kind}/${m.metadata.name}: ${describeErr(err)}`);
          }
        }
      }
      assert.deepEqual(failures, []);
      assert.deepEqual([...new Set(notServed)].sort(), NOT_SERVED, 'kinds the test server does not serve');
    });
  }

  test('strict validation is really on: unknown fields are refused', async () => {
    const manifests = await render([]);
    const deployment = structuredClone(manifests.find((m) => m.kind === 'Deployment')) as Manifest & { spec: Record<string, unknown> };
    deployment.spec.replicaz = 3;
    await assert.rejects(createDryRun(client, deployment), (err: unknown) => isStatus(err, 400, 422) && /replicaz/.test(describeErr(err)));
    const rule = structuredClone(manifests.find((m) => m.kind === 'PrometheusRule')) as Manifest & { spec: { groups: Array<Record<string, unknown>> } };
    rule.spec.groups[0]!.rulez = [];
    // The API server answers an apply with an undeclared field with 500 ("failed to create typed patch object").
    await assert.rejects(apply(client, rule, true), (err: unknown) => /rulez: field not declared in schema/.test(describeErr(err)));
  });

  test('dry run creates nothing', async () => {
    for (const namespace of ['egressgw-system', 'd8-cni-cilium', 'egress-system']) {
      const dep = await client.tryGet({ group: 'apps', version: 'v1', plural: 'deployments', namespace }, 'egressgw-controller');
      assert.equal(dep, undefined, namespace);
    }
  });
});
