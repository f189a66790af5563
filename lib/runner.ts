/**
 * The shared runner every `scripts/0N-*.mjs` hands its step to.
 *
 * A step is a value (`id`, `title`, `run(ctx)`), as in kubeadm's phase workflow. The runner owns
 * what is common: flags, loading the inventory (before anything is written), the workspace lock,
 * logging, `--json` output and exit codes (0 done, 1 failure, 2 bad input).
 */
import { parseArgs } from 'node:util';
import { mkdirSync, openSync, closeSync, writeSync, readFileSync, unlinkSync, existsSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { InputError, EXIT } from './errors.ts';
import { loadInventory, type Inventory } from './inventory.ts';
import { createLogger, type Logger } from './log.ts';

export interface FlagSpec {
  name: string;
  type: 'boolean' | 'string';
  description: string;
  /** What a string flag takes, for --help: "PATH" unless said otherwise (e.g. "N"). */
  valueName?: string;
  /** Shown in --help; the step applies it. */
  default?: string;
}

export interface Context {
  readonly inventory: Inventory;
  readonly inventoryPath: string;
  /** The workspace: everything generated lives here. Absolute. */
  readonly dir: string;
  readonly dryRun: boolean;
  readonly verbose: boolean;
  readonly json: boolean;
  readonly log: Logger;
  /** Step-specific flags, by name. */
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
}

/** What a step reports. `ok: false` means exit 1 (for example one host of six failed). */
export interface StepResult {
  ok: boolean;
  [key: string]: unknown;
}

export interface Step {
  /** e.g. "03-pki" */
  readonly id: string;
  /** One line, e.g. "Sign the cluster's PKI". */
  readonly title: string;
  /** A paragraph for --help. */
  readonly description: string;
  readonly flags?: readonly FlagSpec[];
  /**
   * Whether this run writes into the workspace (and so takes its lock); may depend on the step's
   * flags (01-infra --check writes nothing). Default true. --dry-run never takes the lock.
   */
  readonly writesWorkspace?: boolean | ((flags: Readonly<Record<string, string | boolean | undefined>>) => boolean);
  run(ctx: Context): Promise<StepResult>;
}

const COMMON: FlagSpec[] = [
  { name: 'inventory', type: 'string', description: 'the inventory file', default: './inventory.json' },
  { name: 'dir', type: 'string', description: 'the workspace for everything generated', default: './generated' },
  { name: 'dry-run', type: 'boolean', description: 'say what would change, change nothing' },
  { name: 'verbose', type: 'boolean', description: 'echo every real command as it runs' },
  { name: 'json', type: 'boolean', description: 'print the result as JSON on stdout (logs stay on stderr)' },
  { name: 'help', type: 'boolean', description: 'show this help' },
];

export function helpText(step: Step): string {
  const flags = [...COMMON, ...(step.flags ?? [])];
  const arg = (f: FlagSpec) => (f.type === 'string' ? ` ${f.valueName ?? 'PATH'}` : '');
  const width = Math.max(...flags.map((f) => f.name.length + arg(f).length + 2));
  const rows = flags.map((f) => {
    const left = `--${f.name}${arg(f)}`.padEnd(width + 2);
    return `  ${left}${f.description}${f.default ? ` (default ${f.default})` : ''}`;
  });
  return `${step.id}: ${step.title}\n\n${step.description}\n\nFlags:\n${rows.join('\n')}\n\nExit codes: 0 done, 1 failure, 2 bad input.\n`;
}

interface ParsedFlags {
  inventory: string;
  dir: string;
  dryRun: boolean;
  verbose: boolean;
  json: boolean;
  help: boolean;
  extra: Record<string, string | boolean | undefined>;
}

export function parseFlags(step: Step, argv: readonly string[]): ParsedFlags {
  const flags = [...COMMON, ...(step.flags ?? [])];
  const options = Object.fromEntries(flags.map((f) => [f.name, { type: f.type }])) as Record<string, { type: 'boolean' | 'string' }>;
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new InputError('command line', `${(e as Error).message.replace(/\. To specify.*$/s, '')} (see --help)`);
  }
  const extra: Record<string, string | boolean | undefined> = {};
  for (const f of step.flags ?? []) extra[f.name] = values[f.name];
  return {
    inventory: (values.inventory as string | undefined) ?? './inventory.json',
    dir: (values.dir as string | undefined) ?? './generated',
    dryRun: values['dry-run'] === true,
    verbose: values.verbose === true,
    json: values.json === true,
    help: values.help === true,
    extra,
  };
}

/**
 * A lock file in the workspace so two runs never interleave their writes. A lock left by a
 * process that no longer exists (a killed run) is taken over.
 */
export function lockWorkspace(dir: string): () => void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, '.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(path, 'utf8') === String(process.pid)) unlinkSync(path);
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(readFileSync(path, 'utf8'));
      if (holder && holder !== process.pid && processAlive(holder)) {
        throw new InputError(path, `another run (pid ${holder}) is using this workspace; wait for it or remove the lock if that process is gone`);
      }
      unlinkSync(path);
    }
  }
  throw new Error(`could not lock ${path}`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Builds the context for `step` from command-line flags. Throws InputError before writing anything. */
export function createContext(step: Step, flags: ParsedFlags, log?: Logger): Context {
  const dir = resolve(flags.dir);
  const inventoryPath = resolve(flags.inventory);
  const inventory = loadInventory(flags.inventory, existsSync(dir) ? dir : undefined);
  return {
    inventory,
    inventoryPath,
    dir,
    dryRun: flags.dryRun,
    verbose: flags.verbose,
    json: flags.json,
    log: log ?? createLogger({ verbose: flags.verbose }),
    flags: flags.extra,
  };
}

/** Runs `step` with `argv` and returns the exit code. Never throws. */
export async function runStep(step: Step, argv: readonly string[]): Promise<number> {
  let flags: ParsedFlags | undefined;
  try {
    flags = parseFlags(step, argv);
    if (flags.help) {
      process.stdout.write(helpText(step));
      return EXIT.ok;
    }
    const ctx = createContext(step, flags);
    const writes = typeof step.writesWorkspace === 'function' ? step.writesWorkspace(ctx.flags) : step.writesWorkspace !== false;
    const unlock = !writes || ctx.dryRun ? () => {} : lockWorkspace(ctx.dir);
    let result: StepResult;
    try {
      result = await step.run(ctx);
    } finally {
      unlock();
    }
    if (ctx.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return result.ok ? EXIT.ok : EXIT.failure;
  } catch (e) {
    if (e instanceof InputError) {
      process.stderr.write(`${step.id}: bad input: ${e.message}\n`);
      return EXIT.badInput;
    }
    const err = e as Error;
    process.stderr.write(`${step.id}: failed: ${err.message}\n`);
    if (flags?.verbose && err.stack) process.stderr.write(`${err.stack}\n`);
    return EXIT.failure;
  }
}
