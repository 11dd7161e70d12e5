// Frees a byte range of a sparse volume file. Node has no fallocate(2) binding and no npm package
// without an install script offers FALLOC_FL_PUNCH_HOLE, so util-linux `fallocate --punch-hole`
// is spawned (it keeps the file size). Returns false when the platform cannot punch: the caller
// then writes zeros, so the range reads as zeros either way.
import { execFile } from 'node:child_process';

/** Set after the first refusal (no util-linux, or a filesystem without punch-hole support). */
let punchUnavailable = false;

export function punchHole(path: string, offsetBytes: number, lengthBytes: number): Promise<boolean> {
  if (punchUnavailable) return Promise.resolve(false);
  const args = ['--punch-hole', '--offset', String(offsetBytes), '--length', String(lengthBytes), path];
  return new Promise((resolve) => {
    execFile('fallocate', args, { timeout: 60_000 }, (err) => {
      if (err) punchUnavailable = true;
      resolve(!err);
    });
  });
}
