// Where the repository is, for the environment's manifests (CRDs, fixtures, examples) and the
// `egressgw` binary the agents run as, whatever the working directory.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = join(REPO, 'bin', 'egressgw.js');
