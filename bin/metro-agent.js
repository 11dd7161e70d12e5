#!/usr/bin/env node
// The ES module half of `metro-agent` (bin/metro-agent.cjs sizes libuv's pool first, then loads
// this): registers tsx's ESM hooks for the TypeScript sources, then runs node-agent/main.ts.
import { register } from 'tsx/esm/api';

register();
await import('../node-agent/main.ts');
