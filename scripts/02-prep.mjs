#!/usr/bin/env zx
// 02-prep: see lib/prep/step.ts for what the step does; run with --help for its flags.
import { runScript } from './step.mjs';

await runScript(import.meta.url, 'prep/step.ts', 'prepStep');
