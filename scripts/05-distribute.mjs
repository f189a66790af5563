#!/usr/bin/env zx
// 05-distribute: see lib/distribute/step.ts for what the step does; run with --help for its flags.
import { runScript } from './step.mjs';

await runScript(import.meta.url, 'distribute/step.ts', 'distributeStep');
