#!/usr/bin/env node
// Entry point of `metroctl`: runs cli/main.ts, from its bundle when built (bin/bundle.mjs).
import { runCommand } from './bundle.mjs';

await runCommand('metroctl', new URL('../cli/main.ts', import.meta.url).href);
