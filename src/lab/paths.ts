// Where the repository is, for the lab's manifests (CRDs, examples) whatever the working directory.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
