#!/usr/bin/env node
// The ES module half of `metro-agent` (bin/metro-agent.cjs sizes libuv's pool first, then loads
// this): registers the module hooks that compile the TypeScript sources (ts-hooks.mjs: esbuild
// without keepNames, for the data path's sake), then runs node-agent/main.ts. Errors' stack traces
// point into the TypeScript sources (inline source maps).
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./ts-hooks.mjs', import.meta.url);
await import('../node-agent/main.ts');
