#!/usr/bin/env zx
// 04-kubeconfig: see lib/kubeconfig/step.ts for what the step does; run with --help for its flags.
import { runScript } from './step.mjs';

await runScript(import.meta.url, 'kubeconfig/step.ts', 'kubeconfigStep');
