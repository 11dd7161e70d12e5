// The software version reported by every daemon and by `metroctl --version`.
import fs from 'node:fs';
import path from 'node:path';
import { installRoot } from './install-root.ts';

export const VERSION: string = (JSON.parse(fs.readFileSync(path.join(installRoot, 'package.json'), 'utf8')) as { version: string }).version;
