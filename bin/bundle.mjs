// How bin/metroctl.js, bin/metro-witness.js and bin/metro-agent.js start: from the command's bundle
// in dist/ (made by scripts/build.mjs: one ES module, the TypeScript compiled ahead of time) when it
// was built from the sources as they are now, else from the TypeScript sources, compiled at every
// start (a checkout nobody built, or sources edited since the build). A bundle starts two to three
// times faster; both run the same code.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const distDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');

/** The manifest scripts/build.mjs writes beside a bundle: every source file the bundle was made of. */
export function manifestPath(dir, name) {
  return path.join(dir, `${name}.inputs.json`);
}

/**
 * The bundle of `name` in `dir` when every source it was built from is still there and unchanged
 * since the build began reading the sources; otherwise why not, in a phrase.
 */
export function freshBundle(dir, name) {
  const file = path.join(dir, `${name}.js`);
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(manifestPath(dir, name), 'utf8'));
    fs.statSync(file);
  } catch {
    return { stale: 'not built' };
  }
  const builtMs = manifest.sourcesReadFromMs;
  if (!Array.isArray(manifest.inputs) || typeof manifest.root !== 'string' || typeof builtMs !== 'number') return { stale: 'manifest unreadable' };
  for (const input of manifest.inputs) {
    let mtimeMs;
    try {
      mtimeMs = fs.statSync(path.resolve(dir, manifest.root, input)).mtimeMs;
    } catch {
      return { stale: `${input} is gone` };
    }
    if (mtimeMs > builtMs) return { stale: `${input} changed since the build` };
  }
  return { file };
}

/** The TypeScript sources through tsx's module hooks (they cache what they compiled on disk). */
export async function registerTsx() {
  const { register } = await import('tsx/esm/api');
  register();
}

/**
 * Runs the command `name`: its fresh bundle, or `sourceEntry` (a .ts file URL) once
 * `registerSources` has installed module hooks that compile TypeScript.
 */
export async function runCommand(name, sourceEntry, registerSources = registerTsx) {
  const bundle = freshBundle(distDir, name);
  if (bundle.file) {
    // Stack traces point into the TypeScript sources (the bundle's linked source map).
    process.setSourceMapsEnabled(true);
    await import(pathToFileURL(bundle.file).href);
    return;
  }
  await registerSources();
  await import(sourceEntry);
}
