// Sharing equal parts of cached objects (hash-consing). Every watch event arrives as freshly parsed
// JSON, so 10,000 CEGPs hold 10,000 copies of the same CIDR lists, label maps, selector and
// `egressGateway` blocks, and of every string in them: at 5,000 nodes and 10,000 policies that is most
// of the controller's memory. Informer transforms pass such parts through an Interner, which hands
// back one shared instance per distinct value.
//
// Sound because cached objects are never mutated (the core and the planner only read them): sharing a part between
// objects is then invisible. Only small parts are shared (a large part is usually unique, and its key
// would cost as much as it saves); the table is bounded, and when full it starts over, which loses
// sharing for a while, never correctness.

const MAX_KEY = 256;
const MAX_STRING = 128;

export class Interner {
  private readonly table = new Map<string, string>();
  private readonly values = new Map<string, unknown>();
  private readonly maxEntries: number;

  constructor(maxEntries = 50_000) {
    this.maxEntries = maxEntries;
  }

  /** The shared instance equal to `v` (JSON data: strings, numbers, booleans, null, arrays, plain objects). */
  value<T>(v: T): T {
    return this.walk(v).value as T;
  }

  /** The shared instance of a (short) string; other values as they are. */
  string<T>(v: T): T {
    return (typeof v === 'string' ? this.str(v) : v) as T;
  }

  /** A copy of a string map with its keys and values shared (the map itself is not: it is often unique). */
  strings<T>(m: T): T {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return m;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(m as Record<string, unknown>)) out[this.str(k)] = this.string(v);
    return out as T;
  }

  /**
   * A copy of `v` with every (short) string shared, objects and arrays not: for parts that are mostly
   * unique as a whole but repeat their texts (statuses: reasons, messages, timestamps of one pass).
   */
  stringsDeep<T>(v: T): T {
    if (typeof v === 'string') return this.str(v) as T;
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map((x) => this.stringsDeep(x)) as T;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[this.str(k)] = this.stringsDeep(x);
    return out as T;
  }

  private str(s: string): string {
    if (s.length > MAX_STRING) return s;
    const hit = this.table.get(s);
    if (hit !== undefined) return hit;
    if (this.table.size >= this.maxEntries) this.table.clear();
    this.table.set(s, s);
    return s;
  }

  /** The shared value and its JSON text (undefined when too large to share). */
  private walk(v: unknown): { value: unknown; key: string | undefined } {
    if (typeof v === 'string') {
      const s = this.str(v);
      return { value: s, key: s.length <= MAX_KEY ? JSON.stringify(s) : undefined };
    }
    if (v === null || typeof v !== 'object') return { value: v, key: v === undefined ? undefined : JSON.stringify(v) };
    let key: string | undefined;
    let out: unknown;
    if (Array.isArray(v)) {
      const items: unknown[] = [];
      const keys: string[] = [];
      let shareable = true;
      for (const x of v) {
        const w = this.walk(x);
        items.push(w.value);
        if (w.key === undefined) shareable = false;
        else keys.push(w.key);
      }
      out = items;
      if (shareable) key = `[${keys.join(',')}]`;
    } else {
      const obj: Record<string, unknown> = {};
      const keys: string[] = [];
      let shareable = true;
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        if (x === undefined) continue;
        const w = this.walk(x);
        obj[this.str(k)] = w.value;
        if (w.key === undefined) shareable = false;
        else keys.push(`${JSON.stringify(k)}:${w.key}`);
      }
      out = obj;
      if (shareable) key = `{${keys.join(',')}}`;
    }
    if (key === undefined || key.length > MAX_KEY) return { value: out, key: undefined };
    const hit = this.values.get(key);
    if (hit !== undefined) return { value: hit, key };
    if (this.values.size >= this.maxEntries) this.values.clear();
    this.values.set(key, out);
    return { value: out, key };
  }
}
