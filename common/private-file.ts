// Reads files that hold secrets (CHAP secrets, private keys). A file readable or writable by group
// or others is refused with the reason and the fix, as ssh refuses such a key. The contents never
// reach a log line or an error message: callers and errors name only the path.
import fs from 'node:fs';
import { DaemonError } from './daemon.ts';

/** Mode bits a private file must not have: any access by group or others. */
const groupOrOthersMask = 0o077;

function refuseOpenMode(file: string, what: string, mode: number): void {
  if ((mode & groupOrOthersMask) === 0) return;
  throw new DaemonError(
    `${what}: ${file} is accessible by group or others (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${file} ` +
      '(a private file must be readable by its owner only)',
  );
}

function cannotRead(file: string, what: string, err: unknown): DaemonError {
  return new DaemonError(`${what}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, 1, { cause: err });
}

/** Checks the mode, then reads; the stat and the read use one descriptor, so no swap in between. */
export function readPrivateFileSync(file: string, what: string): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw cannotRead(file, what, err);
  }
  try {
    refuseOpenMode(file, what, fs.fstatSync(fd).mode);
    return fs.readFileSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function readPrivateFile(file: string, what: string): Promise<Buffer> {
  let h: fs.promises.FileHandle;
  try {
    h = await fs.promises.open(file, 'r');
  } catch (err) {
    throw cannotRead(file, what, err);
  }
  try {
    refuseOpenMode(file, what, (await h.stat()).mode);
    return await h.readFile();
  } finally {
    await h.close();
  }
}

/** Writes a private file atomically (temporary file, mode 0600 from creation, then rename). */
export function writePrivateFileSync(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.rmSync(tmp, { force: true });
  fs.writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
}
