// A small JSON REST client over @kubernetes/client-node's KubeConfig and HTTP layer.
//
// Why not only the generated typed APIs: they turn every timestamp into a Date and drop unknown
// fields, while watch events arrive as plain JSON. Our informer caches must hold one shape, the one
// `src/api/types.ts` describes (plain JSON, RFC 3339 strings), so lists, gets and patches go through
// here. Auth, TLS and the dispatcher are exactly the client library's (applySecurityAuthentication),
// and failures are the library's ApiException, so `err.code === 404` works the same everywhere.

import {
  ApiException,
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  PatchStrategy,
  RequestContext,
  setHeaderOptions,
} from '@kubernetes/client-node';

export { ApiException, KubeConfig, PatchStrategy };

/**
 * For callers of the generated typed APIs: their patch methods default to JSON patch; pass
 * `patchOptions(PatchStrategy.MergePatch)` as the second argument to send another patch type.
 */
export const patchOptions = (strategy: PatchStrategy) => setHeaderOptions('Content-Type', strategy);

/**
 * Load a kubeconfig: the explicit path (a `--kubeconfig` flag) if given, else `$KUBECONFIG`, else the
 * in-cluster service account, else `~/.kube/config`.
 */
export function loadKubeConfig(path?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) {
    kc.loadFromFile(path);
  } else if (process.env.KUBECONFIG) {
    kc.loadFromDefault();
  } else if (process.env.KUBERNETES_SERVICE_HOST) {
    kc.loadFromCluster();
  } else {
    kc.loadFromDefault();
  }
  if (!kc.getCurrentCluster()) throw new Error('kubeconfig has no current cluster');
  return kc;
}

/** Where a resource lives. `group: ''` is the core group (`/api/v1`). */
export interface ResourceRef {
  group: string;
  version: string;
  plural: string;
  namespace?: string;
}

/** The URL path of a collection, an object, or an object's subresource. */
export function resourcePath(ref: ResourceRef, name?: string, subresource?: string): string {
  let p = ref.group === '' ? `/api/${ref.version}` : `/apis/${ref.group}/${ref.version}`;
  if (ref.namespace) p += `/namespaces/${encodeURIComponent(ref.namespace)}`;
  p += `/${ref.plural}`;
  if (name !== undefined) p += `/${encodeURIComponent(name)}`;
  if (subresource) p += `/${subresource}`;
  return p;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

const METHODS: Record<Method, HttpMethod> = {
  GET: HttpMethod.GET,
  POST: HttpMethod.POST,
  PUT: HttpMethod.PUT,
  PATCH: HttpMethod.PATCH,
  DELETE: HttpMethod.DELETE,
};

export interface KubeList<T> {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** `true` when the error is an API error with one of the given HTTP status codes. */
export function isStatus(err: unknown, ...codes: number[]): boolean {
  return err instanceof ApiException ? codes.includes(err.code) : codes.includes((err as { code?: number } | null)?.code ?? -1);
}

/**
 * A 404 that says the object does not exist: its Status names the object (`details.name`, reason
 * NotFound), as the API server answers for a missing object of a served resource. With `name`, the
 * Status must name that object.
 *
 * Why not any 404: right after an API server restart a custom resource type answers 404 for a while
 * (its CRD is not served yet: "the server could not find the requested resource", `details: {}`, or a
 * plain "404 page not found"). That says nothing about the object; reading it as "gone" would delete,
 * unlabel or give up on things that still exist. See `isUnserved`.
 */
export function isObjectGone(err: unknown, name?: string): boolean {
  if (!isStatus(err, 404)) return false;
  const st = statusBody(err);
  const named = st?.details?.name;
  return st?.reason === 'NotFound' && typeof named === 'string' && named !== '' && (name === undefined || named === name);
}

/** A 404 that does not name an object: the resource type is not served right now (CRD not (yet) served). */
export function isUnserved(err: unknown): boolean {
  return isStatus(err, 404) && !isObjectGone(err);
}

interface StatusBody {
  reason?: string;
  details?: { name?: unknown };
}

/** The Status an ApiException carries (our client passes it parsed; the generated APIs as a string). */
function statusBody(err: unknown): StatusBody | undefined {
  let body = (err as { body?: unknown } | null)?.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  return body !== null && typeof body === 'object' ? (body as StatusBody) : undefined;
}

const HTTP1_ONLY = Symbol('egressgw.http1Only');

/**
 * Makes every request made with `kc` — ours, and client-node's watches, which build their own
 * connection pools from it — speak HTTP/1.1. undici offers HTTP/2 by default, and Node's HTTP/2 session
 * was seen spinning in native code (nghttp2's send loop) while its memory grew by 100 MB/s, in an agent
 * on a loaded machine whose requests were being aborted: a process that must renew its heartbeat every
 * 150 ms cannot risk that. Changes `kc` in place (idempotent) and returns it.
 */
export function http1Only(kc: KubeConfig): KubeConfig {
  const marked = kc as KubeConfig & { [HTTP1_ONLY]?: true };
  if (marked[HTTP1_ONLY]) return kc;
  const apply = kc.applySecurityAuthentication.bind(kc);
  kc.applySecurityAuthentication = async (ctx) => {
    await apply(ctx);
    const d = ctx.getDispatcher();
    if (d) ctx.setDispatcher(d.compose((dispatch) => (opts, handler) => dispatch({ ...opts, allowH2: false } as typeof opts, handler)));
  };
  marked[HTTP1_ONLY] = true;
  return kc;
}

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  private readonly http = new IsomorphicFetchHttpLibrary();
  private readonly server: string;
  /** Per-request deadline: a request stuck on a dead connection must not stall a control loop. */
  readonly timeoutMs: number;
  // The client library builds a new connection pool (undici Agent) for every request, i.e. a TLS
  // handshake per call. We keep the first one and reuse its keep-alive connections; it is renewed
  // every few minutes so rotated client certificate files are picked up.
  private dispatcher: ReturnType<RequestContext['getDispatcher']>;
  private dispatcherAt = 0;

  constructor(kubeConfig: KubeConfig, opts: { timeoutMs?: number } = {}) {
    this.kubeConfig = http1Only(kubeConfig);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/+$/, '');
  }

  /** One request; the response body parsed as JSON. Non-2xx responses throw ApiException. */
  async request<T = unknown>(method: Method, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const ctx = new RequestContext(url.toString(), METHODS[method]);
    ctx.setHeaderParam('Accept', 'application/json');
    if (opts.body !== undefined) {
      ctx.setHeaderParam('Content-Type', opts.contentType ?? 'application/json');
      ctx.setBody(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    }
    const timeout = AbortSignal.timeout(this.timeoutMs);
    ctx.setSignal(opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout);
    await this.kubeConfig.applySecurityAuthentication(ctx);
    const fresh = ctx.getDispatcher();
    if (fresh) {
      if (!this.dispatcher || Date.now() - this.dispatcherAt > 5 * 60_000) {
        const old = this.dispatcher;
        this.dispatcher = fresh;
        this.dispatcherAt = Date.now();
        // Requests in flight on the old pool finish; then it closes.
        old?.close().catch(() => undefined);
      }
      ctx.setDispatcher(this.dispatcher);
    }
    const res = await this.http.send(ctx).toPromise();
    const text = await res.body.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (res.httpStatusCode < 200 || res.httpStatusCode > 299) {
      const message = (parsed as { message?: string } | undefined)?.message ?? `HTTP ${res.httpStatusCode}`;
      throw new ApiException(res.httpStatusCode, `${method} ${path}: ${message}`, parsed, res.headers);
    }
    return parsed as T;
  }

  get<T>(ref: ResourceRef, name: string, subresource?: string): Promise<T> {
    return this.request<T>('GET', resourcePath(ref, name, subresource));
  }

  /** `get` that returns undefined when the object does not exist (not on a 404 for an unserved resource). */
  async tryGet<T>(ref: ResourceRef, name: string): Promise<T | undefined> {
    try {
      return await this.get<T>(ref, name);
    } catch (err) {
      if (isObjectGone(err, name)) return undefined;
      throw err;
    }
  }

  /** `resourceVersion: '0'` lets the server answer from its watch cache (may be slightly stale). */
  list<T>(ref: ResourceRef, opts: { labelSelector?: string; fieldSelector?: string; resourceVersion?: string; signal?: AbortSignal } = {}): Promise<KubeList<T>> {
    return this.request<KubeList<T>>('GET', resourcePath(ref), {
      query: { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector, resourceVersion: opts.resourceVersion },
      signal: opts.signal,
    });
  }

  create<T>(ref: ResourceRef, body: unknown, query?: RequestOptions['query']): Promise<T> {
    return this.request<T>('POST', resourcePath(ref), { body, query });
  }

  replace<T>(ref: ResourceRef, name: string, body: unknown, subresource?: string): Promise<T> {
    return this.request<T>('PUT', resourcePath(ref, name, subresource), { body });
  }

  /** DELETE; with `uid`, only that incarnation of the object (a precondition). */
  delete(ref: ResourceRef, name: string, opts: { uid?: string; propagationPolicy?: string } = {}): Promise<unknown> {
    const body: Record<string, unknown> = { apiVersion: 'v1', kind: 'DeleteOptions' };
    if (opts.uid) body.preconditions = { uid: opts.uid };
    if (opts.propagationPolicy) body.propagationPolicy = opts.propagationPolicy;
    return this.request('DELETE', resourcePath(ref, name), { body });
  }

  /**
   * `delete` that treats "no such object" as success (not a 404 for an unserved resource: that throws,
   * and the caller retries). Returns whether this call deleted it.
   */
  async deleteIfExists(ref: ResourceRef, name: string, opts: { uid?: string } = {}): Promise<boolean> {
    try {
      await this.delete(ref, name, opts);
      return true;
    } catch (err) {
      if (isObjectGone(err, name)) return false;
      throw err;
    }
  }

  /** RFC 7386 JSON merge patch (`null` deletes a key). */
  mergePatch<T>(ref: ResourceRef, name: string, patch: unknown, subresource?: string): Promise<T> {
    return this.request<T>('PATCH', resourcePath(ref, name, subresource), { body: patch, contentType: PatchStrategy.MergePatch });
  }

  /** RFC 6902 JSON patch (a list of operations; `test` ops give optimistic concurrency). */
  jsonPatch<T>(ref: ResourceRef, name: string, ops: JsonPatchOp[], subresource?: string): Promise<T> {
    return this.request<T>('PATCH', resourcePath(ref, name, subresource), { body: ops, contentType: PatchStrategy.JsonPatch });
  }

  /** Server-side apply: `object` is the full intent of `fieldManager`; fields it stops naming are removed. */
  apply<T>(ref: ResourceRef, name: string, object: unknown, opts: { fieldManager: string; force?: boolean; subresource?: string }): Promise<T> {
    return this.request<T>('PATCH', resourcePath(ref, name, opts.subresource), {
      body: object,
      contentType: PatchStrategy.ServerSideApply,
      query: { fieldManager: opts.fieldManager, force: opts.force ?? false },
    });
  }
}

export type JsonPatchOp =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'move' | 'copy'; from: string; path: string };

/** Escape a key for a JSON pointer (`/metadata/labels/<key>`): `~` → `~0`, `/` → `~1`. */
export function jsonPointerEscape(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}
