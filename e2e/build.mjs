// Bundles the browser side of the e2e tests (mediasoup-client included) into
// dist/. Offline, in milliseconds; run by `npm run build` from scripts/install-deps.sh.
import { build } from 'esbuild';

await build({
  entryPoints: { 'worker-roundtrip': 'worker-roundtrip/page.js' },
  bundle: true,
  format: 'esm',
  target: 'chrome120',
  outdir: 'dist',
  sourcemap: 'inline',
  logLevel: 'warning',
});
