// The controller bench in a process of its own, started by bench/run.ts (`npm run bench`) as
//
//   node <the controller Deployment's NODE_OPTIONS, or --node-options> --expose-gc bench/controller-child.ts \
//     '<options JSON>' <results file>
//
// so that memory (RSS, heap) is measured under exactly the Node/V8 flags the shipped controller runs with,
// not under whatever the parent process was started with. Progress goes to stderr (the parent inherits it);
// the results JSON goes to the file the parent names, never to stdout.

import { writeFileSync } from 'node:fs';
import { runControllerBench, type ControllerBenchOptions } from './controller.ts';

/** What bench/run.ts passes (JSON): the bench options without the log function. */
export type ControllerChildOptions = Omit<ControllerBenchOptions, 'log'>;

const [optionsJson, outFile] = process.argv.slice(2);
if (optionsJson === undefined || outFile === undefined) {
  process.stderr.write('usage: node [flags] --expose-gc bench/controller-child.ts <options JSON> <results file> (started by bench/run.ts)\n');
  process.exit(2);
}
const options = JSON.parse(optionsJson) as ControllerChildOptions;
const results = await runControllerBench({ ...options, log: (l) => void process.stderr.write(l + '\n') });
writeFileSync(outFile, JSON.stringify(results) + '\n');
