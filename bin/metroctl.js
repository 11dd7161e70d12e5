#!/usr/bin/env node
// Entry point of `metroctl`: loads the TypeScript sources through tsx's ESM hooks, then runs cli/main.ts.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
