#!/usr/bin/env node
// Tide's CLI entry. TypeScript runs through tsx's loader (esbuild, no build step).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
