#!/usr/bin/env node
// Entry point of `metro-witness`: runs site-witness/main.ts, from its bundle when built (bin/bundle.mjs).
import { runCommand } from './bundle.mjs';

await runCommand('metro-witness', new URL('../site-witness/main.ts', import.meta.url).href);
