#!/usr/bin/env zx
// 01-infra: see lib/infra/step.ts for what the step does; run with --help for its flags.
import { runScript } from './step.mjs';

await runScript(import.meta.url, 'infra/step.ts', 'infraStep');
