#!/usr/bin/env node
// Entry point: Node 24 runs our TypeScript sources directly (type stripping), so there is no build step.
import '../src/cli/main.ts';
