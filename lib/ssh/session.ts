/**
 * One verified SSH connection to one host (node-ssh underneath), and what a step does with it:
 * run a command that must succeed, read a file, compare a checksum, install a file atomically.
 *
 * Everything on a session runs one operation at a time, in call order, even if the caller fires
 * several at once: node-ssh (and many sshd builds) break with concurrent transfers on one
 * connection, and a strict order keeps each host's log readable.
 */
import { NodeSSH } from 'node-ssh';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { Host } from '../inventory.ts';
import type { Logger } from '../log.ts';
import { shellQuote } from '../exec.ts';
import { sha256 } from '../fsutil.ts';

/** How to reach a host: one entry of `<dir>/infra/ssh.json`. */
export interface Target {
  address: string;
  port: number;
  user: string;
}

export interface RunOptions {
  /** Run as root: through `sudo -n` when the login user is not root, as is when it is. Default false. */
  sudo?: boolean;
  /** Bytes for the command's standard input. */
  stdin?: string | Buffer;
  /** Exit codes besides 0 that are answers, not failures (e.g. 1 from `grep -q`). */
  okCodes?: readonly number[];
  /** What to show in the --verbose echo instead of the command (e.g. when it embeds a script). */
  echo?: string;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** A remote command failed: non-zero exit, no exit status at all (killed, connection lost). */
export class RemoteCommandError extends Error {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly code: number | null,
    readonly signal: string | null,
    readonly stderr: string,
  ) {
    const status = code === null ? `no exit status${signal ? ` (signal ${signal})` : ' (connection lost?)'}` : `exit ${code}`;
    const tail = stderr.trim().split('\n').slice(-5).join('\n');
    super(`remote command failed on ${host} (${status}): ${command}${tail ? `\n${tail}` : ''}`);
    this.name = 'RemoteCommandError';
  }
}

export type ChangeStatus = 'already' | 'changed' | 'would-change';

/** One line of what a step did on a host: `controller-0: hostname changed (was lab-1a2b3c)`. */
export interface Report {
  what: string;
  status: ChangeStatus | 'failed';
  detail?: string;
}

export interface PutOptions {
  /** Act as root (default true: installed files are system files owned by root). */
  sudo?: boolean;
  /**
   * A command that must succeed on the uploaded temp file before it replaces the old one;
   * `{}` stands for the temp file's path, e.g. `haproxy -c -f {}`.
   */
  validate?: string;
  /** Only compare; report `would-change` instead of writing. */
  dryRun?: boolean;
}

/** What `putFile` found or did. */
export interface PutResult {
  status: ChangeStatus;
  /** Why it changed: `new file`, `content differs`, `mode 644 -> 600`, ... */
  reason?: string;
}

const DEFAULT_TIMEOUT_MS = 15_000;

/** A connected host. Made by the pool in ./pool.ts; steps receive it from `forEachHost`. */
export class Session {
  readonly reports: Report[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private lost: Error | undefined;

  constructor(
    readonly host: Host,
    readonly target: Target,
    private readonly ssh: NodeSSH,
    private readonly log: Logger,
    closed: Promise<Error>,
  ) {
    void closed.then((e) => {
      this.lost = e;
    });
    this.closed = closed;
  }

  private readonly closed: Promise<Error>;

  get name(): string {
    return this.host.name;
  }

  /** False once the connection dropped: every later operation fails at once. */
  get connected(): boolean {
    return this.lost === undefined;
  }

  /** True when the login user is root (so `sudo` is never needed). */
  get isRoot(): boolean {
    return this.target.user === 'root';
  }

  /** Records and logs one result line keyed by this host; the pool sums them into the summary. */
  report(what: string, status: Report['status'], detail?: string): void {
    this.reports.push({ what, status, ...(detail ? { detail } : {}) });
    const words = status === 'would-change' ? 'would change' : status;
    if (status === 'failed') this.log.error(this.name, `${what} failed${detail ? `: ${detail}` : ''}`);
    else this.log.info(this.name, `${what} ${words}${detail ? ` (${detail})` : ''}`);
  }

  /** Logs a line keyed by this host. */
  info(message: string): void {
    this.log.info(this.name, message);
  }

  warn(message: string): void {
    this.log.warn(this.name, message);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private wrap(cmd: string, sudo: boolean): string {
    return sudo && !this.isRoot ? `sudo -n -- sh -c ${shellQuote(cmd)}` : cmd;
  }

  /**
   * Runs `cmd` through the login shell and resolves when it exits 0 (or with an `okCodes` code).
   * Rejects with RemoteCommandError on any other exit code and when there is no exit status.
   */
  run(cmd: string, opts: RunOptions = {}): Promise<RunResult> {
    return this.serial(() => this.runNow(cmd, opts));
  }

  private async runNow(cmd: string, opts: RunOptions): Promise<RunResult> {
    if (this.lost) throw new Error(`${this.name}: the SSH connection is gone (${this.lost.message})`);
    const full = this.wrap(cmd, opts.sudo === true);
    this.log.command(this.name, opts.echo ? this.wrap(opts.echo, opts.sudo === true) : full);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const stdin = opts.stdin === undefined ? undefined : typeof opts.stdin === 'string' ? opts.stdin : Readable.from([opts.stdin]);
    let signal: string | null = null;
    const exec = this.ssh.execCommand(full, {
      ...(stdin !== undefined ? { stdin } : {}),
      noTrim: true,
      onStdout: (b) => out.push(b),
      onStderr: (b) => err.push(b),
      onChannel: (ch) => ch.on('exit', (_code: unknown, sig: unknown) => {
        if (typeof sig === 'string') signal = sig;
      }),
    });
    const res = await Promise.race([
      exec,
      this.closed.then((e) => {
        throw new Error(`${this.name}: the SSH connection was lost while running a command (${e.message})`);
      }),
    ]);
    const stdout = Buffer.concat(out).toString('utf8');
    const stderr = Buffer.concat(err).toString('utf8');
    const code = res.code;
    if (code === null || (code !== 0 && !opts.okCodes?.includes(code))) {
      throw new RemoteCommandError(this.name, (opts.echo ?? cmd).split('\n')[0]!.replace(/^# /, ''), code, res.signal ?? signal, stderr || stdout);
    }
    return { stdout, stderr, code };
  }

  /** Runs a test: true on exit 0, false on exit 1, an error on anything else. */
  async check(cmd: string, opts: Omit<RunOptions, 'okCodes'> = {}): Promise<boolean> {
    return (await this.run(cmd, { ...opts, okCodes: [1] })).code === 0;
  }

  /** The content of a remote file, or undefined when there is no such regular file. */
  async readFile(path: string, opts: { sudo?: boolean } = {}): Promise<string | undefined> {
    const q = shellQuote(path);
    const r = await this.run(`if [ -f ${q} ]; then cat ${q}; else exit 3; fi`, { sudo: opts.sudo ?? true, okCodes: [3] });
    return r.code === 3 ? undefined : r.stdout;
  }

  /** The SHA-256 (hex) of a remote file, or undefined when there is no such regular file. */
  async sha256(path: string, opts: { sudo?: boolean } = {}): Promise<string | undefined> {
    const q = shellQuote(path);
    const r = await this.run(`if [ -f ${q} ]; then sha256sum ${q}; else exit 3; fi`, { sudo: opts.sudo ?? true, okCodes: [3] });
    if (r.code === 3) return undefined;
    const hex = /^[0-9a-f]{64}/.exec(r.stdout)?.[0];
    if (!hex) throw new Error(`${this.name}: unexpected sha256sum output: ${r.stdout.slice(0, 200)}`);
    return hex;
  }

  /**
   * Installs `source` (a local path or the bytes themselves) at `remotePath`, owned by root with
   * `mode`, only if the content, mode or owner differ. The bytes go to a temp file next to the
   * target (created 0600), are checked by SHA-256 (and `validate`, if given), then renamed into
   * place, so the target is always either the old file or the complete new one.
   */
  putFile(source: string | Buffer, remotePath: string, mode: number, opts: PutOptions = {}): Promise<PutResult> {
    return this.serial(() => this.putNow(source, remotePath, mode, opts));
  }

  private async putNow(source: string | Buffer, remotePath: string, mode: number, opts: PutOptions): Promise<PutResult> {
    if (!posix.isAbsolute(remotePath)) throw new Error(`${this.name}: remote path must be absolute: ${remotePath}`);
    const data = typeof source === 'string' ? readFileSync(source) : source;
    const want = sha256(data);
    const sudo = opts.sudo ?? true;
    const q = shellQuote(remotePath);
    const seen = await this.runNow(`if [ -f ${q} ]; then sha256sum ${q} | cut -c1-64; stat -c '%a %u %g' ${q}; else echo missing; fi`, { sudo });
    const [hash = '', stat = ''] = seen.stdout.trim().split('\n');
    let reason: string | undefined;
    if (hash === 'missing') reason = 'new file';
    else if (hash !== want) reason = 'content differs';
    else {
      const [m, uid, gid] = stat.split(' ');
      if (parseInt(m ?? '', 8) !== mode) reason = `mode ${m} -> ${mode.toString(8)}`;
      else if (uid !== '0' || gid !== '0') reason = `owner ${uid}:${gid} -> 0:0`;
    }
    if (!reason) return { status: 'already' };
    if (opts.dryRun) return { status: 'would-change', reason };

    const dir = posix.dirname(remotePath);
    const tmp = posix.join(dir, `.${posix.basename(remotePath)}.hardway-${randomBytes(4).toString('hex')}`);
    const t = shellQuote(tmp);
    const validate = opts.validate ? opts.validate.split('{}').join(t) : undefined;
    const script = [
      'set -e',
      `trap 'rm -f ${t}' EXIT`,
      `(umask 022; mkdir -p ${shellQuote(dir)})`,
      `(umask 077; cat > ${t})`,
      `got=$(sha256sum ${t} | cut -c1-64)`,
      `if [ "$got" != ${want} ]; then echo "upload damaged in transit: sha256 $got, expected ${want}" >&2; exit 90; fi`,
      ...(validate ? [`if ! ${validate} >&2; then echo "validation failed: ${validate.replace(/["$`\\]/g, '\\$&')}" >&2; exit 91; fi`] : []),
      `chown 0:0 ${t}`,
      `chmod ${mode.toString(8).padStart(4, '0')} ${t}`,
      `mv -f ${t} ${q}`,
    ].join('\n');
    await this.runNow(script, {
      sudo,
      stdin: data,
      // The real script; the bytes it reads on stdin (maybe a private key) are never shown.
      echo: `# upload ${data.length} bytes (sha256 ${want}) on stdin to ${remotePath}\n${script}`,
    });
    return { status: 'changed', reason };
  }

  /** Closes the connection. */
  close(): void {
    this.ssh.dispose();
  }
}

export { DEFAULT_TIMEOUT_MS };
