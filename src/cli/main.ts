// `egressgw` command dispatcher. Each subcommand lives in its own module and is imported lazily, so
// `egressgw status` does not load the agent's native addon and `egressgw agent` does not load the CLI
// renderers. User mistakes end with a one-line message and exit code 2, never a stack trace.

import { UsageError, runMain } from '../term/errors.ts';

interface Subcommand {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number | void> }>;
}

const commands: Record<string, Subcommand> = {
  status: { summary: 'gateways, active nodes and policies at a glance', load: () => import('./status.ts') },
  plan: { summary: 'offline: manifests in, eligibility, election and rendered objects out', load: () => import('./plan.ts') },
  move: { summary: 'graceful make-before-break handover of a gateway to another node', load: () => import('./move.ts') },
  manifests: { summary: 'print the install YAML', load: () => import('./manifests.ts') },
  lab: { summary: 'the whole system on this machine (test API server, network namespaces, agents)', load: () => import('../lab/main.ts') },
  controller: { summary: 'run the controller (in a cluster: the Deployment)', load: () => import('./controller.ts') },
  agent: { summary: 'run the node agent (in a cluster: the DaemonSet)', load: () => import('./agent.ts') },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'egressgw: a highly available egress gateway for Kubernetes (Deckhouse EgressGateway API on Cilium)',
    '',
    'Usage: egressgw <command> [flags]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `egressgw <command> --help` for the flags of a command.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    const { createRequire } = await import('node:module');
    const pkg = createRequire(import.meta.url)('../../package.json') as { version: string };
    process.stdout.write(pkg.version + '\n');
    return 0;
  }
  const command = commands[name];
  if (!command) throw new UsageError(`unknown command "${name}"\n\n${usage()}`);
  const mod = await command.load();
  return (await mod.run(rest)) ?? 0;
}

await runMain(() => main(process.argv.slice(2)));
