#!/usr/bin/env zx
// 03-pki: see lib/pki/step.ts for what the step does; run with --help for its flags.
import { runScript } from './step.mjs';

await runScript(import.meta.url, 'pki/step.ts', 'pkiStep');
