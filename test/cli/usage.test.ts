// Every command answers --help on stdout with exit 0, and a user mistake with one line on stderr, exit 2
// and no stack trace.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { egressgw } from './helpers.ts';

const COMMANDS = ['status', 'plan', 'move', 'manifests', 'controller', 'agent'];

describe('help', () => {
  for (const cmd of COMMANDS) {
    test(`${cmd} --help`, async () => {
      const r = await egressgw([cmd, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Usage: egressgw ${cmd}`));
      assert.equal(r.stderr, '');
    });
  }
  test('no command prints the usage and exits 2', async () => {
    const r = await egressgw([]);
    assert.equal(r.code, 2);
    assert.match(r.stdout, /Commands:/);
  });
});

describe('user mistakes', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown command', ['frobnicate'], /unknown command "frobnicate"/],
    ['unknown flag', ['status', '--frobnicate'], /Unknown option '--frobnicate'/],
    ['bad output format', ['status', '-o', 'xml'], /-o\/--output: "xml" is not one of table, json, yaml/],
    ['plan without files', ['plan'], /no manifests given/],
    ['plan on a missing file', ['plan', '-f', 'does/not/exist.yaml'], /does\/not\/exist.yaml: no such file or directory/],
    ['plan with a bad --now', ['plan', '-f', 'test/cli/fixtures/plan/cluster', '--now', 'yesterday'], /--now: "yesterday" is not an RFC 3339 time/],
    ['plan on broken YAML', ['plan', '-f', 'test/cli/fixtures/plan/broken.yaml'], /broken\.yaml: /],
    ['move without arguments', ['move'], /expected exactly two arguments, GATEWAY and NODE/],
    ['move with --timeout but no --wait', ['move', 'gw', 'n1', '--timeout', '5s'], /--timeout only makes sense with --wait/],
    ['move with a bad timeout', ['move', 'gw', 'n1', '--wait', '--timeout', 'soon'], /--timeout: invalid duration "soon"/],
    ['manifests with a bad namespace', ['manifests', '--namespace', 'Not_A_Namespace'], /--namespace: "Not_A_Namespace" is not a valid namespace name/],
    ['manifests with bad replicas', ['manifests', '--replicas', 'two'], /--replicas: "two" must be an integer from 1 to 10/],
    ['status with a missing kubeconfig', ['status', '--kubeconfig', '/nonexistent/kubeconfig'], /cannot load kubeconfig \/nonexistent\/kubeconfig/],
  ];
  for (const [name, args, message] of cases) {
    test(name, async () => {
      const r = await egressgw(args);
      assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /^egressgw: /);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });
  }
});
