// Where this installation's own files are (package.json, protos/, bin/): found from this module's
// location, so the same code works from the TypeScript sources (common/) and from a bundle (dist/,
// scripts/build.mjs), whose modules all share the bundle's location.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest folder at or above `from` holding package.json and protos/. */
export function findInstallRoot(from: string): string {
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'protos'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no metrocluster installation (package.json and protos/) at or above ${from}`);
  }
}

export const installRoot = findInstallRoot(path.dirname(fileURLToPath(import.meta.url)));
