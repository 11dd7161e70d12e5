#!/usr/bin/env node
// Compiles metroctl, metro-witness and metro-agent ahead of time: one ES module each in dist/ (npm
// packages stay external, imported from node_modules as before), a linked source map, and a
// manifest of the source files each was made of and of when the build began reading them, by which
// bin/bundle.mjs tells whether the bundle is still current.
// Files are written beside their final name and renamed, so a command starting meanwhile reads a
// whole bundle. Usage: node scripts/build.mjs [--out DIR] (default dist/).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { distDir, manifestPath } from '../bin/bundle.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outAt = process.argv.indexOf('--out');
const outDir = outAt > 0 ? path.resolve(process.argv[outAt + 1]) : distDir;
const commands = { metroctl: 'cli/main.ts', 'metro-witness': 'site-witness/main.ts', 'metro-agent': 'node-agent/main.ts' };

function writeWhole(file, contents) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, contents);
  fs.renameSync(tmp, file);
}

fs.mkdirSync(outDir, { recursive: true });
for (const [name, entry] of Object.entries(commands)) {
  const outfile = path.join(outDir, `${name}.js`);
  // A source saved after this moment may not be in the bundle: bin/bundle.mjs compares with it.
  const sourcesReadFromMs = Date.now();
  const result = await build({
    entryPoints: [path.join(root, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: `node${process.versions.node}`,
    packages: 'external',
    sourcemap: 'linked',
    metafile: true,
    write: false,
    // As bin/ts-hooks.mjs: no keepNames (it wraps every named closure the data path creates per command).
    keepNames: false,
    logLevel: 'warning',
  });
  // The map first, the bundle next, the manifest last: a bundle is current only once all three are.
  const files = [...result.outputFiles.filter((f) => f.path.endsWith('.map')), ...result.outputFiles.filter((f) => !f.path.endsWith('.map'))];
  for (const f of files) writeWhole(f.path, f.contents);
  const inputs = Object.keys(result.metafile.inputs).map((p) => path.relative(root, path.resolve(root, p))).sort();
  writeWhole(manifestPath(outDir, name), `${JSON.stringify({ root: path.relative(outDir, root) || '.', sourcesReadFromMs, inputs }, null, 1)}\n`);
  console.log(`built ${path.relative(root, outfile)} from ${inputs.length} source files`);
}
