// Bundles test/browser/uppy-page.ts (Uppy 5, @uppy/aws-s3 and this package's sources) into
// one ES module for the browser test:  node test/browser/build.mjs OUT_DIR
// Writes OUT_DIR/bundle.js and copies uppy.html to OUT_DIR/index.html.

import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) throw new Error('usage: node test/browser/build.mjs OUT_DIR');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, 'uppy-page.ts')],
  outfile: join(out, 'bundle.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'chrome120',
  sourcemap: 'inline',
  logLevel: 'warning',
});
copyFileSync(join(here, 'uppy.html'), join(out, 'index.html'));
