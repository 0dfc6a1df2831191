// A container's command line as the kubelet would run it: its env (values and the downward API's
// fieldRefs) and `$(VAR)` expansion in args (`$$` escapes a dollar; an undefined `$(VAR)` stays as is).
// Used to run our components with exactly the arguments the rendered install gives them.

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}
interface Container {
  name: string;
  args?: string[];
  env?: EnvVar[];
}
type Workload = { spec: { template: { spec: { containers: Container[] } } } };

/** What the downward API would say about the pod. */
export interface PodFacts {
  namespace: string;
  name: string;
  nodeName?: string;
}

function fieldRef(path: string, pod: PodFacts): string {
  if (path === 'metadata.namespace') return pod.namespace;
  if (path === 'metadata.name') return pod.name;
  if (path === 'spec.nodeName' && pod.nodeName !== undefined) return pod.nodeName;
  throw new Error(`fieldRef ${path} is not provided by this test`);
}

export function expandVars(s: string, vars: ReadonlyMap<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string | undefined) => (m === '$$' ? '$' : (vars.get(name!) ?? m)));
}

/** The container's env (as the kubelet resolves it, in order) and its expanded args. */
export function containerRun(workload: unknown, container: string, pod: PodFacts): { args: string[]; env: Map<string, string> } {
  const c = (workload as Workload).spec.template.spec.containers.find((x) => x.name === container);
  if (!c) throw new Error(`no container ${container}`);
  const env = new Map<string, string>();
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env.set(e.name, expandVars(e.value, env));
    else if (e.valueFrom?.fieldRef) env.set(e.name, fieldRef(e.valueFrom.fieldRef.fieldPath, pod));
    else throw new Error(`env ${e.name}: only values and fieldRefs are provided by this test`);
  }
  return { args: (c.args ?? []).map((a) => expandVars(a, env)), env };
}
