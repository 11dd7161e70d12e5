// `metroctl topology validate` through the installed binary, as an admin runs it: the examples
// validate (exit 0), a broken file is refused with file:line:column and exit 2.
import test from 'ava';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { metroctlBin, repoRoot } from './harness/cluster.ts';
import { run } from './harness/tools.ts';
import { removeClusterDir } from './harness/secrets.ts';

for (const example of ['local-demo.yaml', 'active-passive.yaml', 'long-distance-async.yaml']) {
  test(`example ${example} validates`, async (t) => {
    const r = await run(process.execPath, [metroctlBin, 'topology', 'validate', path.join(repoRoot, 'topology-examples', example)]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /valid: cluster "[a-z0-9.-]+", sites \S+ and \S+, \d+ groups?/);
  });
}

test('a broken topology is refused with its position and exit code 2', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'metro-topo-'));
  try {
    const file = path.join(dir, 'bad.yaml');
    const text = (await fs.readFile(path.join(repoRoot, 'topology-examples', 'local-demo.yaml'), 'utf8'))
      .replace('preferredSite: beta', 'preferredSite: betta');
    await fs.writeFile(file, text);
    const line = text.split('\n').findIndex((l) => l.includes('betta')) + 1;
    const r = await run(process.execPath, [metroctlBin, 'topology', 'validate', file]);
    t.is(r.code, 2);
    t.regex(r.stderr, new RegExp(`bad\\.yaml:${line}:\\d+: error: groups\\[1\\]\\.preferredSite: .*betta.*did you mean "beta"`));
    const usage = await run(process.execPath, [metroctlBin, 'topology', 'validate']);
    t.is(usage.code, 2, 'a missing argument is bad usage');
  } finally {
    await removeClusterDir(dir);
  }
});
