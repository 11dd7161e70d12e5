// metroctl, metro-witness and metro-agent run from bundles compiled ahead of time (scripts/build.mjs),
// and from the TypeScript sources whenever a file a bundle was made of changed since its build began
// reading them, or is gone (bin/bundle.mjs).
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { run } from './harness/tools.ts';
import { makeTopology, repoRoot } from './harness/cluster.ts';
import { VERSION } from '../common/version.ts';
// @ts-expect-error: plain ES module of bin/, no type declarations
import { freshBundle } from '../bin/bundle.mjs';

type Fresh = { file?: string; stale?: string };
const fresh = freshBundle as (dir: string, name: string) => Fresh;

test('a bundle is used only while every source it was made of is unchanged and present', (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'metro-bundle-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dist = path.join(root, 'dist');
  fs.mkdirSync(path.join(root, 'src'));
  fs.mkdirSync(dist);
  t.deepEqual(fresh(dist, 'tool'), { stale: 'not built' });
  const nowS = Date.now() / 1000;
  for (const f of ['a.ts', 'b.ts']) {
    fs.writeFileSync(path.join(root, 'src', f), '');
    fs.utimesSync(path.join(root, 'src', f), nowS - 60, nowS - 60);
  }
  fs.writeFileSync(path.join(dist, 'tool.inputs.json'), JSON.stringify({ root: '..', sourcesReadFromMs: (nowS - 30) * 1000, inputs: ['src/a.ts', 'src/b.ts'] }));
  t.deepEqual(fresh(dist, 'tool'), { stale: 'not built' }, 'a manifest without its bundle');
  fs.writeFileSync(path.join(dist, 'tool.js'), '');
  t.deepEqual(fresh(dist, 'tool'), { file: path.join(dist, 'tool.js') });

  // Saved while the build ran (after it began reading), though before the bundle was written.
  fs.utimesSync(path.join(root, 'src', 'b.ts'), nowS - 20, nowS - 20);
  t.deepEqual(fresh(dist, 'tool'), { stale: 'src/b.ts changed since the build' });
  fs.utimesSync(path.join(root, 'src', 'b.ts'), nowS - 60, nowS - 60);
  fs.rmSync(path.join(root, 'src', 'a.ts'));
  t.deepEqual(fresh(dist, 'tool'), { stale: 'src/a.ts is gone' });
  fs.writeFileSync(path.join(dist, 'tool.inputs.json'), JSON.stringify({ root: '..', inputs: ['src/b.ts'] }));
  t.deepEqual(fresh(dist, 'tool'), { stale: 'manifest unreadable' }, 'a manifest of an older build format');
  fs.writeFileSync(path.join(dist, 'tool.inputs.json'), '{"inputs": 3}');
  t.deepEqual(fresh(dist, 'tool'), { stale: 'manifest unreadable' });
});

test('the built bundles run without the TypeScript sources loader and answer as the commands do', async (t) => {
  // Inside the checkout, as dist/ is: the bundles find package.json, protos/ and node_modules above them.
  fs.mkdirSync(path.join(repoRoot, 'test-output'), { recursive: true });
  const out = fs.mkdtempSync(path.join(repoRoot, 'test-output', 'bundle-'));
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }));
  const built = await run(process.execPath, [path.join(repoRoot, 'scripts', 'build.mjs'), '--out', out], { timeoutMs: 120_000 });
  t.is(built.code, 0, built.stdout + built.stderr);
  for (const name of ['metroctl', 'metro-witness', 'metro-agent']) {
    const b = fresh(out, name);
    t.is(b.file, path.join(out, `${name}.js`), `${name}: ${b.stale}`);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, `${name}.inputs.json`), 'utf8')) as { inputs: string[] };
    t.true(manifest.inputs.includes('common/version.ts'), manifest.inputs.join(' '));
    t.false(manifest.inputs.some((f) => f.includes('node_modules')), 'npm packages stay external');
  }
  // Plain node cannot load a .ts file: these run only if the bundle holds all of our code.
  const v = await run(process.execPath, [path.join(out, 'metroctl.js'), '--version'], { timeoutMs: 60_000 });
  t.is(v.code, 0, v.stderr);
  t.is(v.stdout.trim(), VERSION);
  const help = await run(process.execPath, [path.join(out, 'metroctl.js'), 'topology', 'validate', '--help'], { timeoutMs: 60_000 });
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /Usage: metroctl topology validate/);
  const agentHelp = await run(process.execPath, [path.join(out, 'metro-agent.js'), '--help'], { timeoutMs: 60_000 });
  t.is(agentHelp.code, 0, agentHelp.stderr);
  t.regex(agentHelp.stdout, /--site/);
  const check = await run(process.execPath, [path.join(out, 'metroctl.js'), 'topology', 'validate', path.join(repoRoot, 'topology-examples', 'local-demo.yaml')], { timeoutMs: 60_000 });
  t.is(check.code, 0, check.stdout + check.stderr);

  // The witness from its bundle: certificates made by the bundled metroctl, the gRPC contracts read
  // at run time from protos/ above the bundle, serving until SIGTERM.
  const topo = await makeTopology();
  t.teardown(() => fs.rmSync(topo.dir, { recursive: true, force: true }));
  const certs = await run(process.execPath, [path.join(out, 'metroctl.js'), 'certs', 'init', '-f', topo.file], { timeoutMs: 60_000 });
  t.is(certs.code, 0, certs.stdout + certs.stderr);
  const witness = spawn(process.execPath, [path.join(out, 'metro-witness.js'), '-f', topo.file, '--log-file', path.join(topo.dir, 'witness.log')], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let output = '';
  witness.stdout!.on('data', (d: Buffer) => { output += d.toString(); });
  witness.stderr!.on('data', (d: Buffer) => { output += d.toString(); });
  const exited = new Promise<number | null>((resolve) => witness.once('exit', (code) => resolve(code)));
  const ready = await Promise.race([
    new Promise<boolean>((resolve) => witness.on('message', (m: { type?: string }) => { if (m?.type === 'ready') resolve(true); })),
    exited.then(() => false),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 60_000)),
  ]);
  t.true(ready, `the bundled witness did not start:\n${output}`);
  witness.kill('SIGTERM');
  t.is(await exited, 0, output);
});
