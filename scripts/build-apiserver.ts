// `npm run apiserver` (and `pretest`): build or find the test API server and etcd binaries.
// Cache: $EGRESSGW_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/egressgw. See src/testenv/apiserver-build.ts.
import { ensureApiserverBinaries } from '../src/testenv/apiserver-build.ts';

const started = performance.now();
try {
  if (process.env.KUBEBUILDER_ASSETS) {
    console.error(`test apiserver: KUBEBUILDER_ASSETS=${process.env.KUBEBUILDER_ASSETS} is set; tests use its kube-apiserver and etcd, building ours anyway`);
  }
  await ensureApiserverBinaries();
  console.error(`test apiserver: done in ${((performance.now() - started) / 1000).toFixed(1)}s`);
} catch (e) {
  console.error(`test apiserver: build FAILED after ${((performance.now() - started) / 1000).toFixed(1)}s: ${(e as Error).message}`);
  process.exitCode = 1;
}
