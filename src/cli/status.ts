// `egressgw status`: every gateway and every policy on one screen, from a live cluster.

import { stringify } from 'yaml';
import { UsageError, parseFlags } from '../term/errors.ts';
import { connect } from './cluster.ts';
import { fetchStatusModel } from '../status/fetch.ts';
import { renderStatus } from '../status/model.ts';
import { colourWanted } from '../term/table.ts';

const HELP = `Usage: egressgw status [flags]

Shows every EgressGateway (mode, VIP or interface, active node, ready/total nodes, last failover, Ready
and its reason) and every EgressGatewayPolicy (gateway, destinations, number of selected pods, Ready and
its reason).

Flags:
  --kubeconfig FILE        kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)
  -o, --output FORMAT      table (default), json or yaml
  --no-color               no colours (they are used only on a terminal, and never with NO_COLOR set)
  -h, --help               this help`;

export const OUTPUT_FORMATS = ['table', 'json', 'yaml'] as const;

export function parseOutput(value: string | undefined, allowed: readonly string[]): string {
  const v = value ?? allowed[0]!;
  if (!allowed.includes(v)) throw new UsageError(`-o/--output: "${v}" is not one of ${allowed.join(', ')}`);
  return v;
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseFlags(
    argv,
    { kubeconfig: { type: 'string' }, output: { type: 'string', short: 'o' }, 'no-color': { type: 'boolean' } },
    HELP,
  );
  if (!parsed) return 0;
  const output = parseOutput(parsed.values.output, OUTPUT_FORMATS);
  const client = connect(parsed.values.kubeconfig);
  const model = await fetchStatusModel(client);
  if (output === 'json') process.stdout.write(JSON.stringify(model, null, 2) + '\n');
  else if (output === 'yaml') process.stdout.write(stringify(model));
  else process.stdout.write(renderStatus(model, { color: colourWanted(process.stdout, parsed.values['no-color'] === true), now: Date.now() }));
  return 0;
}
