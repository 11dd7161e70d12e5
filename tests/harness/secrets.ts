// Secrets never reach a log (issue: "secrets absent from every log line of a full test run"): every
// test cluster's files are removed through removeClusterDir, which first reads each secret the
// cluster holds (CHAP secret files, every private key's base64 body and each of its lines) and
// looks for it in every daemon's log and in what `metroctl up` printed. A leak fails the test run.
import fs from 'node:fs/promises';
import path from 'node:path';

async function files(dir: string): Promise<string[]> {
  const names = await fs.readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return names.map((n) => path.join(dir, String(n)));
}

/** The secret strings under a cluster's folder: CHAP secret files (secrets/) and private keys (*.key). */
async function secretsOf(dir: string): Promise<Array<{ from: string; value: string }>> {
  const out: Array<{ from: string; value: string }> = [];
  for (const f of await files(dir)) {
    const rel = path.relative(dir, f);
    const st = await fs.stat(f).catch(() => undefined);
    if (!st?.isFile()) continue;
    if (rel.split(path.sep)[0] === 'secrets') {
      const value = (await fs.readFile(f, 'utf8')).trim();
      if (value.length >= 8) out.push({ from: rel, value });
    } else if (f.endsWith('.key')) {
      const body = (await fs.readFile(f, 'utf8')).split('\n').filter((l) => l && !l.startsWith('-----'));
      out.push({ from: rel, value: body.join('') }, ...body.filter((l) => l.length >= 16).map((value) => ({ from: rel, value })));
    }
  }
  return out;
}

/** Where any secret of the cluster appears in its daemons' logs (data/<daemon>/logs/) or in `printed`. */
export async function leakedSecrets(dir: string, printed: Record<string, string> = {}): Promise<string[]> {
  const secrets = await secretsOf(dir);
  if (secrets.length === 0) return [];
  const texts: Array<[string, string]> = Object.entries(printed);
  for (const f of await files(path.join(dir, 'data'))) {
    if (path.basename(path.dirname(f)) === 'logs' && f.endsWith('.log')) texts.push([path.relative(dir, f), await fs.readFile(f, 'utf8')]);
  }
  const found = new Set<string>();
  for (const [name, text] of texts) for (const s of secrets) if (text.includes(s.value)) found.add(`${name} holds secret material of ${s.from}`);
  return [...found];
}

/** Removes a test cluster's folder once no log of it holds a secret (else throws, keeping it). */
export async function removeClusterDir(dir: string, printed: Record<string, string> = {}): Promise<void> {
  const leaks = await leakedSecrets(dir, printed);
  if (leaks.length > 0) throw new Error(`secrets leaked into logs (files kept in ${dir}):\n${leaks.join('\n')}`);
  if (process.env.METRO_TEST_KEEP) process.stderr.write(`kept ${dir}\n`);
  else await fs.rm(dir, { recursive: true, force: true });
}
