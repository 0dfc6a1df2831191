// Generates docs/api.md from the CRDs in deploy/crds/: for each resource its identity, printer columns,
// and every field with type, required-ness, constraints, validation rules (CEL messages) and description.
// The CRDs are the source of truth; run `node scripts/gen-api-docs.ts` after changing them
// (`--check` exits 1 when docs/api.md is out of date, for CI).

import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';

interface Schema {
  type?: string;
  format?: string;
  description?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: unknown[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  default?: unknown;
  'x-kubernetes-validations'?: Array<{ rule: string; message?: string; messageExpression?: string }>;
  'x-kubernetes-list-type'?: string;
  'x-kubernetes-map-type'?: string;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
}

interface CRD {
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; singular?: string; shortNames?: string[]; listKind?: string };
    versions: Array<{
      name: string;
      served: boolean;
      storage: boolean;
      subresources?: Record<string, unknown>;
      additionalPrinterColumns?: Array<{ name: string; type: string; jsonPath: string; priority?: number; description?: string }>;
      schema: { openAPIV3Schema: Schema };
    }>;
  };
}

const root = join(import.meta.dirname, '..');
const crdDir = join(root, 'deploy', 'crds');
const out = join(root, 'docs', 'api.md');

/** Table cells: one line, pipes escaped. */
const cell = (s: string): string => s.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|').trim();
const code = (s: string): string => '`' + s.replace(/`/g, "'") + '`';

function typeOf(s: Schema): string {
  if (s.type === 'array') return `[]${s.items ? typeOf(s.items) : 'any'}`;
  if (s.type === 'object' && s.additionalProperties && typeof s.additionalProperties === 'object' && !s.properties) {
    return `map[string]${typeOf(s.additionalProperties)}`;
  }
  if (s['x-kubernetes-preserve-unknown-fields'] && !s.type) return 'any';
  return (s.type ?? 'any') + (s.format ? ` (${s.format})` : '');
}

function constraints(s: Schema): string[] {
  const c: string[] = [];
  if (s.enum) c.push(`one of ${s.enum.map((v) => code(String(v))).join(', ')}`);
  if (s.default !== undefined) c.push(`default ${code(JSON.stringify(s.default))}`);
  if (s.minLength !== undefined) c.push(`min length ${s.minLength}`);
  if (s.maxLength !== undefined) c.push(`max length ${s.maxLength}`);
  if (s.minimum !== undefined) c.push(`≥ ${s.minimum}`);
  if (s.maximum !== undefined) c.push(`≤ ${s.maximum}`);
  if (s.minItems !== undefined) c.push(`at least ${s.minItems} items`);
  if (s.maxItems !== undefined) c.push(`at most ${s.maxItems} items`);
  if (s.maxProperties !== undefined) c.push(`at most ${s.maxProperties} entries`);
  if (s.pattern) c.push(`pattern ${code(s.pattern)}`);
  if (s['x-kubernetes-list-type']) c.push(`list type ${s['x-kubernetes-list-type']}`);
  if (s['x-kubernetes-map-type']) c.push(`map type ${s['x-kubernetes-map-type']}`);
  for (const v of s['x-kubernetes-validations'] ?? []) c.push(v.message ? `“${v.message}”` : `rule ${code(v.rule)}`);
  // Patterns and rules of map values and list items apply to each entry: say so on the parent row.
  const inner = s.type === 'array' ? s.items : typeof s.additionalProperties === 'object' ? s.additionalProperties : undefined;
  if (inner && !inner.properties) {
    const ic = constraints(inner);
    if (ic.length > 0) c.push(`each ${s.type === 'array' ? 'item' : 'value'}: ${ic.join('; ')}`);
  }
  return c;
}

interface Row {
  path: string;
  type: string;
  required: boolean;
  constraints: string;
  description: string;
}

function walk(s: Schema, path: string, required: boolean, rows: Row[]): void {
  if (path !== '') {
    rows.push({ path, type: typeOf(s), required, constraints: constraints(s).join('; '), description: s.description ?? '' });
  }
  const objectSchema = s.type === 'array' ? s.items : s;
  if (!objectSchema?.properties) return;
  const prefix = path === '' ? '' : s.type === 'array' ? `${path}[].` : `${path}.`;
  for (const [name, child] of Object.entries(objectSchema.properties)) {
    if (path === '' && (name === 'apiVersion' || name === 'kind' || name === 'metadata')) continue;
    walk(child, prefix + name, objectSchema.required?.includes(name) ?? false, rows);
  }
}

function renderCRD(crd: CRD): string {
  const { names, group, scope } = crd.spec;
  const lines: string[] = [`## ${names.kind}`, ''];
  for (const v of crd.spec.versions) {
    const schema = v.schema.openAPIV3Schema;
    lines.push(
      '| | |',
      '|---|---|',
      `| API version | ${code(`${group}/${v.name}`)}${v.storage ? ' (storage)' : ''}${v.served ? '' : ' (not served)'} |`,
      `| Kind / list kind | ${code(names.kind)} / ${code(names.listKind ?? names.kind + 'List')} |`,
      `| Plural / singular | ${code(names.plural)} / ${code(names.singular ?? names.kind.toLowerCase())} |`,
      `| Short names | ${names.shortNames?.map(code).join(', ') || 'none'} |`,
      `| Scope | ${scope} |`,
      `| Subresources | ${Object.keys(v.subresources ?? {}).map(code).join(', ') || 'none'} |`,
      '',
    );
    if (schema.description) lines.push(schema.description.trim(), '');
    const objectRules = schema['x-kubernetes-validations'] ?? [];
    if (objectRules.length > 0) {
      lines.push('Object-level validation:', '');
      for (const r of objectRules) lines.push(`- ${r.message ?? code(r.rule)}`);
      lines.push('');
    }
    const cols = v.additionalPrinterColumns ?? [];
    if (cols.length > 0) {
      lines.push('### Printer columns', '', '| Name | Type | JSONPath | Shown |', '|---|---|---|---|');
      for (const c of cols) lines.push(`| ${cell(c.name)} | ${c.type} | ${code(c.jsonPath)} | ${c.priority ? '`-o wide`' : 'always'} |`);
      lines.push('');
    }
    const rows: Row[] = [];
    walk(schema, '', true, rows);
    lines.push('### Fields', '', '| Field | Type | Required | Validation | Description |', '|---|---|---|---|---|');
    for (const r of rows) {
      lines.push(`| ${code(r.path)} | ${cell(r.type)} | ${r.required ? 'yes' : ''} | ${cell(r.constraints)} | ${cell(r.description)} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

export function generate(dir = crdDir): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
  const crds = files.map((f) => parse(readFileSync(join(dir, f), 'utf8')) as CRD);
  // Public API first, the internal channel last.
  crds.sort((a, b) => Number(a.spec.group.startsWith('internal.')) - Number(b.spec.group.startsWith('internal.')) || a.spec.names.kind.localeCompare(b.spec.names.kind));
  return [
    '# egressgw API reference',
    '',
    '<!-- Generated by scripts/gen-api-docs.ts from deploy/crds/. Do not edit by hand. -->',
    '',
    ...crds.map((c) => `- [${c.spec.names.kind}](#${c.spec.names.kind.toLowerCase()}) (${code(c.spec.group)})`),
    '',
    ...crds.map(renderCRD),
  ].join('\n');
}

if (import.meta.main) {
  const text = generate();
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(out, 'utf8');
    } catch {
      // missing counts as out of date
    }
    if (current !== text) {
      process.stderr.write('docs/api.md is out of date: run node scripts/gen-api-docs.ts\n');
      process.exit(1);
    }
  } else {
    writeFileSync(out, text);
    process.stdout.write(`wrote ${out}\n`);
  }
}
