#!/usr/bin/env zx
// The whole pipeline, 01 → 05, in order, stopping at the first step that fails.
//   node scripts/pipeline.mjs [--inventory PATH] [--dir PATH] [--verbose]
// With the lab provider this needs root (network namespaces). Without root it runs only the
// steps that need no machines (03-pki, 04-kubeconfig) and says so.
import { register } from 'tsx/esm/api';

register();
const { runPipeline } = await import('../lib/pipeline.ts');
process.exitCode = await runPipeline(process.argv.slice(2));
