#!/usr/bin/env node
// Entry point of `metro-agent`: loads the TypeScript sources through tsx's ESM hooks, then runs node-agent/main.ts.
import { register } from 'tsx/esm/api';

register();
await import('../node-agent/main.ts');
