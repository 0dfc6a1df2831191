// The Dockerfile builds the image of `npm run image` (its build stage runs scripts/build-image.ts); the
// image config it declares must be the one the script writes into the OCI image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE_CONFIG, ROOT } from '../../scripts/image/inputs.ts';

test('Dockerfile: built by scripts/build-image.ts, with the OCI image config of npm run image', () => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const final = text.slice(text.lastIndexOf('\nFROM '));
  const instr = (name: string): string => {
    const m = new RegExp(`^${name} (.+)$`, 'm').exec(final);
    assert.ok(m, `final stage has ${name}`);
    return m[1]!;
  };
  assert.match(text, /node_modules\/\.bin\/node scripts\/build-image\.ts --rootfs-dir \/rootfs/);
  assert.equal(instr('FROM'), 'scratch');
  assert.deepEqual(JSON.parse(instr('ENTRYPOINT')), IMAGE_CONFIG.entrypoint);
  assert.deepEqual(JSON.parse(instr('CMD')), IMAGE_CONFIG.cmd);
  assert.equal(instr('USER'), IMAGE_CONFIG.user);
  assert.equal(instr('WORKDIR'), IMAGE_CONFIG.workingDir);
  assert.deepEqual(instr('ENV').split(' '), IMAGE_CONFIG.env);
});
