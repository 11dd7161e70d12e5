#!/usr/bin/env node
// The ES module half of `metro-agent` (bin/metro-agent.cjs sizes libuv's pool first, then loads
// this): runs node-agent/main.ts from its bundle when built (bin/bundle.mjs), else through the
// module hooks that compile the TypeScript sources (ts-hooks.mjs: esbuild without keepNames, for
// the data path's sake; the bundle is built without it too). Errors' stack traces point into the
// TypeScript sources (source maps).
import { register } from 'node:module';
import { runCommand } from './bundle.mjs';

await runCommand('metro-agent', new URL('../node-agent/main.ts', import.meta.url).href, () => {
  process.setSourceMapsEnabled(true);
  register('./ts-hooks.mjs', import.meta.url);
});
