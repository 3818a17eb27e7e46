#!/usr/bin/env node
// The `posko` command: runs the TypeScript sources through tsx (no build step on the Pi).
import { register } from 'tsx/esm/api';
register();
await import('../src/main.ts');
