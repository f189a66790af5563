/** Runs the five steps in order (what `npm start` does). */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { runStep, type Step } from './runner.ts';
import { EXIT } from './errors.ts';

interface Stage {
  file: string;
  load: () => Promise<Step>;
  needsMachines: boolean;
}

const STAGES: Stage[] = [
  { file: 'infra/step.ts', load: async () => (await import('./infra/step.ts')).infraStep, needsMachines: true },
  { file: 'prep/step.ts', load: async () => (await import('./prep/step.ts')).prepStep, needsMachines: true },
  { file: 'pki/step.ts', load: async () => (await import('./pki/step.ts')).pkiStep, needsMachines: false },
  { file: 'kubeconfig/step.ts', load: async () => (await import('./kubeconfig/step.ts')).kubeconfigStep, needsMachines: false },
  { file: 'distribute/step.ts', load: async () => (await import('./distribute/step.ts')).distributeStep, needsMachines: true },
];

export async function runPipeline(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv, strict: true,
      options: { inventory: { type: 'string' }, dir: { type: 'string' }, verbose: { type: 'boolean' }, help: { type: 'boolean' } },
    }));
  } catch (e) {
    process.stderr.write(`pipeline: bad input: ${(e as Error).message}\n`);
    return EXIT.badInput;
  }
  if (values.help) {
    process.stdout.write('pipeline: runs 01-infra, 02-prep, 03-pki, 04-kubeconfig, 05-distribute in order.\n' +
      'Flags: --inventory PATH, --dir PATH, --verbose (passed to every step).\n');
    return EXIT.ok;
  }
  const common: string[] = [];
  if (typeof values.inventory === 'string') common.push('--inventory', values.inventory);
  if (typeof values.dir === 'string') common.push('--dir', values.dir);
  if (values.verbose) common.push('--verbose');

  let provider = 'lab';
  try {
    provider = String(JSON.parse(readFileSync(typeof values.inventory === 'string' ? values.inventory : './inventory.json', 'utf8')).provider);
  } catch {
    /* the first step reports a bad inventory properly */
  }
  const canReachMachines = provider !== 'lab' || process.getuid?.() === 0;
  if (!canReachMachines) {
    process.stderr.write('pipeline: the lab needs root (network namespaces), so only 03-pki and 04-kubeconfig run now.\n' +
      'pipeline: run as root for the whole pipeline: 01-infra, 02-prep, 03-pki, 04-kubeconfig, 05-distribute.\n');
  }
  for (const stage of STAGES) {
    if (stage.needsMachines && !canReachMachines) continue;
    const step = await stage.load();
    process.stderr.write(`\n== ${step.id}: ${step.title}\n`);
    const code = await runStep(step, common);
    if (code !== EXIT.ok) {
      process.stderr.write(`pipeline: stopped at ${step.id} (exit ${code}); fix the cause and run again: every step keeps what is already done.\n`);
      return code;
    }
  }
  process.stderr.write('\npipeline: done.\n');
  return EXIT.ok;
}
