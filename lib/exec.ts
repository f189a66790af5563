/** Runs real binaries (cfssl, openssl, ip, ...) and keeps a copy-pasteable record of each call. */
import { spawn } from 'node:child_process';
import { CommandError } from './errors.ts';
import type { Logger } from './log.ts';

export interface ExecOptions {
  cwd?: string;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  /** Subject for the --verbose echo (certificate or host name). */
  subject?: string;
  /** Accept these exit codes besides 0 instead of throwing. */
  okCodes?: number[];
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
  /** The command as a shell line, quoted so it can be pasted. */
  commandLine: string;
}

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return SAFE.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export function commandLine(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map(shellQuote).join(' ');
}

/** Spawns `cmd args` without a shell; rejects with CommandError on a non-zero or missing exit code. */
export function exec(cmd: string, args: readonly string[], opts: ExecOptions = {}, log?: Logger): Promise<ExecResult> {
  const line = commandLine(cmd, args);
  log?.command(opts.subject ?? '', line);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ENOENT' ? new CommandError(line, null, `${cmd}: not found on PATH`, `${cmd} is not installed`) : e);
    });
    child.on('close', (code) => {
      const res = { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code: code ?? -1, commandLine: line };
      if (code === 0 || (code !== null && opts.okCodes?.includes(code))) resolve(res);
      else reject(new CommandError(line, code, res.stderr || res.stdout));
    });
    child.stdin.on('error', () => {}); // the child may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs `fn` over `items` with at most `limit` in flight; results keep the input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

/** Like mapLimit, but every item runs even when some fail; returns each outcome. */
export async function settleLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  return mapLimit(items, limit, (item, i) =>
    fn(item, i).then(
      (value): PromiseSettledResult<R> => ({ status: 'fulfilled', value }),
      (reason): PromiseSettledResult<R> => ({ status: 'rejected', reason }),
    ),
  );
}
