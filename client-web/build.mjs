// Builds the web client into dist/: index.html, app.js (mediasoup-client
// bundled in), app.css. Offline, well under a second. The coordinator serves
// dist/ at its root URL (THRONG_WEB_ROOT, default client-web/dist).
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';

const watch = process.argv.includes('--dev');
await rm('dist', { recursive: true, force: true });
await mkdir('dist', { recursive: true });
await build({
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  format: 'esm',
  target: ['chrome111', 'firefox115', 'safari16'],
  outdir: 'dist',
  minify: !watch,
  sourcemap: watch ? 'inline' : false,
  logLevel: 'warning',
  legalComments: 'linked',
});
await copyFile('src/index.html', 'dist/index.html');
await copyFile('src/style.css', 'dist/app.css');
await copyFile('src/icon.svg', 'dist/icon.svg');
