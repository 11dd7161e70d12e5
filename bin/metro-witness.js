#!/usr/bin/env node
// Entry point of `metro-witness`: loads the TypeScript sources through tsx's ESM hooks, then runs site-witness/main.ts.
import { register } from 'tsx/esm/api';

register();
await import('../site-witness/main.ts');
