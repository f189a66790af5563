/**
 * The SSH layer every host-touching step uses (02-prep, 05-distribute, ...).
 *
 *   const outcomes = await forEachHost(ctx, ctx.inventory.hosts, sshOptionsFromFlags(ctx), async (s) => {
 *     await s.run('hostname', { sudo: true });
 *     const r = await s.putFile(buf, '/etc/x', 0o644);
 *     s.report('x', r.status, r.reason);
 *   });
 *   return { ok: outcomes.every((o) => o.ok), hosts: outcomes };
 *
 * - One connection per host for the whole step (`openSessions` + several `pool.forEachHost` calls
 *   reuse it; `forEachHost(ctx, ...)` is the one-shot form that also prints the summary and closes).
 * - Hosts run in parallel, at most `parallel` at once (flag `--parallel`, default 10).
 * - Every host key is checked against `<dir>/ssh/known_hosts`. A host missing from it is refused
 *   unless `acceptNewHostKeys` (flag `--accept-new-host-keys`), which records the key and says so
 *   loudly. A key that differs from a recorded one is always refused.
 * - A host that fails (cannot connect, wrong key, a command throws, a `failed` report) never stops
 *   the others; its outcome says why. Later `pool.forEachHost` calls skip a host that could not
 *   connect. The step returns `ok: false` (exit 1) if any host failed; a re-run does what is left.
 */
import { NodeSSH } from 'node-ssh';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Context, FlagSpec } from '../runner.ts';
import type { Host } from '../inventory.ts';
import type { Logger } from '../log.ts';
import { InputError } from '../errors.ts';
import { mapLimit } from '../exec.ts';
import { writeFileAtomic } from '../fsutil.ts';
import { SSH_TARGETS_FILE, SSH_KEY_FILE, KNOWN_HOSTS_FILE, type SshTargets } from '../infra/provider.ts';
import {
  parseKnownHosts,
  verifyHostKey,
  knownKeyTypes,
  hostKeyAlgorithmsFor,
  hostKeyName,
  fingerprint,
  formatKnownHostsLine,
  blobType,
  type KnownHostEntry,
} from './known-hosts.ts';
import { Session, DEFAULT_TIMEOUT_MS, type Report, type Target } from './session.ts';

export const DEFAULT_PARALLEL = 10;
const MAX_PARALLEL = 256;

/** The flags every SSH step adds to its `flags`. */
export const SSH_FLAGS: readonly FlagSpec[] = [
  { name: 'parallel', type: 'string', valueName: 'N', description: 'work on at most N hosts at once', default: String(DEFAULT_PARALLEL) },
  {
    name: 'accept-new-host-keys',
    type: 'boolean',
    description: 'trust (and record in known_hosts) the key of a host known_hosts does not list yet; a changed key is always refused',
  },
];

export interface SshOptions {
  /** Hosts worked on at once. Default 10. */
  parallel?: number;
  /** Trust-on-first-use for hosts missing from known_hosts. Default false: refuse them. */
  acceptNewHostKeys?: boolean;
  /** TCP connect plus SSH handshake. Default 15 s. */
  connectTimeoutMs?: number;
}

/** Reads `--parallel` and `--accept-new-host-keys`; a bad number is an InputError (exit 2). */
export function sshOptionsFromFlags(ctx: Pick<Context, 'flags'>): SshOptions {
  const raw = ctx.flags.parallel;
  let parallel = DEFAULT_PARALLEL;
  if (typeof raw === 'string') {
    parallel = Number(raw);
    if (!/^\d+$/.test(raw) || parallel < 1 || parallel > MAX_PARALLEL) {
      throw new InputError('command line', `--parallel must be a whole number from 1 to ${MAX_PARALLEL}, got "${raw}"`);
    }
  }
  return { parallel, acceptNewHostKeys: ctx.flags['accept-new-host-keys'] === true };
}

/** What happened on one host during one `forEachHost` (or, in `pool.outcomes()`, the whole step). */
export interface HostOutcome<T = unknown> {
  host: string;
  /** False when the host could not be reached, `fn` threw, or it reported a failure. */
  ok: boolean;
  value?: T;
  /** Why it failed (first failure), one line. */
  error?: string;
  reports: Report[];
  counts: { changed: number; already: number; wouldChange: number; failed: number };
  ms: number;
}

/** The part of a step's Context the SSH layer reads. */
export type SshContext = Pick<Context, 'dir' | 'log' | 'dryRun'>;

interface HostState {
  session?: Session;
  /** The connection attempt in flight, so concurrent callers share one connection. */
  connecting?: Promise<Session>;
  /** Set when the host could not be connected: later calls skip it with this reason. */
  unreachable?: string;
  errors: string[];
  ms: number;
}

/** One verified connection per host, opened on first use and kept until `close()`. */
export class SessionPool {
  private readonly state = new Map<string, HostState>();
  private knownHosts: KnownHostEntry[];
  private knownHostsWrite: Promise<void> = Promise.resolve();
  readonly parallel: number;
  readonly acceptNewHostKeys: boolean;
  private readonly timeoutMs: number;

  constructor(
    private readonly ctx: SshContext,
    private readonly targets: SshTargets,
    private readonly privateKey: string,
    readonly knownHostsPath: string,
    opts: SshOptions,
  ) {
    this.parallel = opts.parallel ?? DEFAULT_PARALLEL;
    this.acceptNewHostKeys = opts.acceptNewHostKeys ?? false;
    this.timeoutMs = opts.connectTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.knownHosts = existsSync(knownHostsPath) ? parseKnownHosts(readFileSync(knownHostsPath, 'utf8')) : [];
  }

  private get log(): Logger {
    return this.ctx.log;
  }

  private hostState(name: string): HostState {
    let s = this.state.get(name);
    if (!s) {
      s = { errors: [], ms: 0 };
      this.state.set(name, s);
    }
    return s;
  }

  /**
   * Runs `fn` once per host, at most `parallel` at once, each with that host's one session.
   * Never rejects: each host's result or failure is in its outcome, in the order of `hosts`.
   */
  async forEachHost<T>(hosts: readonly Host[], fn: (session: Session) => Promise<T>): Promise<HostOutcome<T>[]> {
    return mapLimit(hosts, this.parallel, async (host) => {
      const st = this.hostState(host.name);
      const started = Date.now();
      const before = st.session?.reports.length ?? 0;
      let value: T | undefined;
      let error: string | undefined;
      try {
        if (st.unreachable) throw new Error(`skipped: ${st.unreachable}`);
        const session = st.session ?? (await (st.connecting ??= this.connect(host, st)));
        value = await fn(session);
      } catch (e) {
        error = oneLine(e);
        if (st.session && !st.session.connected) st.unreachable ??= `the SSH connection was lost earlier in this step (${error})`;
        st.errors.push(error);
        if (!error.startsWith('skipped: ')) this.log.error(host.name, error);
      }
      const ms = Date.now() - started;
      st.ms += ms;
      const reports = st.session ? st.session.reports.slice(before) : [];
      return outcome(host.name, reports, ms, error, value);
    });
  }

  private async connect(host: Host, st: HostState): Promise<Session> {
    const target = this.targets.hosts[host.name];
    if (!target) {
      st.unreachable = `not listed in ${join(this.ctx.dir, SSH_TARGETS_FILE)}; re-run 01-infra`;
      throw new Error(st.unreachable);
    }
    try {
      const session = await this.open(host, target);
      st.session = session;
      return session;
    } catch (e) {
      st.unreachable = oneLine(e);
      throw new Error(st.unreachable);
    }
  }

  private async open(host: Host, target: Target): Promise<Session> {
    const name = hostKeyName(target.address, target.port);
    const knownTypes = knownKeyTypes(this.knownHosts, name);
    let refusal: string | undefined;
    let accepted: Buffer | undefined;
    const hostVerifier = (key: Buffer): boolean => {
      const verdict = verifyHostKey(this.knownHosts, name, key);
      const fp = fingerprint(key);
      switch (verdict.status) {
        case 'known':
          return true;
        case 'revoked':
          refusal = `host key ${blobType(key)} ${fp} offered by ${name} is marked @revoked in ${this.knownHostsPath} (line ${verdict.entry.line}); refusing to connect`;
          return false;
        case 'changed': {
          const was = verdict.expected.map((e) => `${e.keyType} ${fingerprint(e.key)} (line ${e.line})`).join(', ');
          refusal =
            `HOST KEY CHANGED for ${name}: it offered ${blobType(key)} ${fp}, but ${this.knownHostsPath} records ${was}. ` +
            `Refusing to connect: this is what a man-in-the-middle looks like. If the host was rebuilt on purpose, ` +
            `remove its old key (ssh-keygen -R ${name} -f ${this.knownHostsPath}) and re-run 01-infra or use --accept-new-host-keys.`;
          return false;
        }
        case 'unknown':
          if (!this.acceptNewHostKeys) {
            refusal =
              `unknown host key: ${name} offered ${blobType(key)} ${fp}, and ${this.knownHostsPath} has no key for it. ` +
              `Refusing to connect. Re-run 01-infra to record the hosts' keys, or pass --accept-new-host-keys to trust this key on first use.`;
            return false;
          }
          accepted = key;
          return true;
      }
    };

    const ssh = new NodeSSH();
    let resolveClosed!: (e: Error) => void;
    const closed = new Promise<Error>((r) => {
      resolveClosed = r;
    });
    this.log.command(host.name, `ssh -i ${join(this.ctx.dir, SSH_KEY_FILE)} -o UserKnownHostsFile=${this.knownHostsPath} -o StrictHostKeyChecking=${this.acceptNewHostKeys ? 'accept-new' : 'yes'} -p ${target.port} ${target.user}@${target.address}`);
    const connecting = ssh.connect({
      host: target.address,
      port: target.port,
      username: target.user,
      privateKey: this.privateKey,
      hostVerifier,
      readyTimeout: this.timeoutMs,
      keepaliveInterval: 10_000,
      ...(knownTypes.length > 0 ? { algorithms: { serverHostKey: hostKeyAlgorithmsFor(knownTypes) as never } } : {}),
    });
    // node-ssh drops its own 'error' listener once connected; without one, a later network error
    // would crash the whole process instead of failing this host.
    const conn = ssh.connection;
    conn?.on('error', (e: Error) => resolveClosed(e));
    conn?.on('close', () => resolveClosed(new Error('connection closed')));
    try {
      await connecting;
      // Small request/response exchanges: Nagle's algorithm would add ~40ms+ to each command.
      ssh.connection?.setNoDelay(true);
    } catch (e) {
      ssh.dispose();
      throw new Error(refusal ?? describeConnectError(e, target, this.ctx.dir, knownTypes));
    }
    if (accepted) await this.recordNewKey(host, target, accepted);
    const session = new Session(host, target, ssh, this.log, closed);
    this.log.info(host.name, `connected to ${target.user}@${name} (host key verified)`);
    return session;
  }

  private recordNewKey(host: Host, target: Target, key: Buffer): Promise<void> {
    const names = [hostKeyName(target.address, target.port), hostKeyName(host.name, target.port)];
    const line = formatKnownHostsLine(names, key, `hardway:${host.name} accepted-on-first-use ${new Date().toISOString()}`);
    const fp = `${blobType(key)} ${fingerprint(key)}`;
    if (this.ctx.dryRun) {
      this.log.warn(host.name, `ACCEPTED A NEW HOST KEY ${fp} for ${names[0]} for this dry run only (--accept-new-host-keys); not recorded`);
      return Promise.resolve();
    }
    // Serialise writers: hosts connect in parallel.
    this.knownHostsWrite = this.knownHostsWrite.then(() => {
      const old = existsSync(this.knownHostsPath) ? readFileSync(this.knownHostsPath, 'utf8') : '';
      const text = `${old}${old === '' || old.endsWith('\n') ? '' : '\n'}${line}\n`;
      writeFileAtomic(this.knownHostsPath, text, 0o644);
      this.knownHosts = parseKnownHosts(text);
      this.log.warn(host.name, `ACCEPTED A NEW HOST KEY ${fp} for ${names[0]} (--accept-new-host-keys, trust on first use); recorded in ${this.knownHostsPath}`);
    });
    return this.knownHostsWrite;
  }

  /** Every host this pool has seen, with everything reported on it during the step. */
  outcomes(): HostOutcome[] {
    return [...this.state.entries()].map(([name, st]) => outcome(name, st.session?.reports ?? [], st.ms, st.errors[0]));
  }

  /** Prints one line per host: ok or FAILED, counts, and the first failure. */
  printSummary(title = 'summary'): void {
    const all = this.outcomes();
    if (all.length === 0) return;
    this.log.info('', `${title}, per host:`);
    for (const o of all) this.log.info(o.host, summaryLine(o));
  }

  /** Closes every connection. */
  async close(): Promise<void> {
    for (const st of this.state.values()) st.session?.close();
  }
}

/** `ok: 2 changed, 7 already (1.3s)` or `FAILED: <reason>`. */
export function summaryLine(o: HostOutcome): string {
  const parts = [
    o.counts.changed ? `${o.counts.changed} changed` : '',
    o.counts.wouldChange ? `${o.counts.wouldChange} would change` : '',
    o.counts.already ? `${o.counts.already} already` : '',
    o.counts.failed ? `${o.counts.failed} failed` : '',
  ].filter(Boolean);
  const counts = parts.length ? parts.join(', ') : 'nothing to do';
  const time = `${(o.ms / 1000).toFixed(1)}s`;
  if (o.ok) return `ok: ${counts} (${time})`;
  const firstFailed = o.reports.find((r) => r.status === 'failed');
  const why = o.error ?? (firstFailed ? `${firstFailed.what}: ${firstFailed.detail ?? 'failed'}` : 'failed');
  return `FAILED: ${why.split('\n')[0]}${parts.length ? ` [${counts}]` : ''}`;
}

function outcome<T>(host: string, reports: Report[], ms: number, error?: string, value?: T): HostOutcome<T> {
  const counts = { changed: 0, already: 0, wouldChange: 0, failed: 0 };
  for (const r of reports) {
    if (r.status === 'changed') counts.changed++;
    else if (r.status === 'already') counts.already++;
    else if (r.status === 'would-change') counts.wouldChange++;
    else counts.failed++;
  }
  return {
    host,
    ok: error === undefined && counts.failed === 0,
    ...(value !== undefined ? { value } : {}),
    ...(error !== undefined ? { error } : {}),
    reports: [...reports],
    counts,
    ms,
  };
}

function oneLine(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function describeConnectError(e: unknown, t: Target, dir: string, knownTypes: string[]): string {
  const err = e as NodeJS.ErrnoException & { level?: string };
  const where = `${t.address}:${t.port}`;
  const msg = err?.message ?? String(e);
  if (err?.code === 'ECONNREFUSED') return `cannot connect to ${where}: connection refused (is sshd running there? re-run 01-infra)`;
  if (err?.code === 'EHOSTUNREACH' || err?.code === 'ENETUNREACH') return `cannot connect to ${where}: no route to host`;
  if (err?.code === 'ETIMEDOUT' || /timed out/i.test(msg)) return `cannot connect to ${where}: timed out`;
  if (/authentication methods failed/i.test(msg)) {
    return `${where} refused our key ${join(dir, SSH_KEY_FILE)} for user ${t.user}`;
  }
  if (/no matching host key/i.test(msg) || (err?.level === 'handshake' && knownTypes.length > 0 && /host key/i.test(msg))) {
    return `${where} offers none of the host key types known_hosts records for it (${knownTypes.join(', ')}); refusing to connect`;
  }
  return `cannot connect to ${where}: ${msg}`;
}

/**
 * Reads how to reach the hosts (`infra/ssh.json`), the login key and known_hosts. Connects to
 * nothing yet: each host connects on its first `forEachHost`. Throws InputError if 01-infra has
 * not run.
 */
export async function openSessions(ctx: SshContext, opts: SshOptions = {}): Promise<SessionPool> {
  const targetsPath = join(ctx.dir, SSH_TARGETS_FILE);
  const keyPath = join(ctx.dir, SSH_KEY_FILE);
  if (!existsSync(targetsPath)) throw new InputError(targetsPath, 'not found: run 01-infra first (it records how to reach each host)');
  if (!existsSync(keyPath)) throw new InputError(keyPath, 'not found: run 01-infra first (it makes the SSH key the steps log in with)');
  let targets: SshTargets;
  try {
    targets = JSON.parse(readFileSync(targetsPath, 'utf8')) as SshTargets;
    if (typeof targets !== 'object' || targets === null || typeof targets.hosts !== 'object') throw new Error('no "hosts" object');
  } catch (e) {
    throw new InputError(targetsPath, `cannot read it: ${(e as Error).message}`);
  }
  return new SessionPool(ctx, targets, readFileSync(keyPath, 'utf8'), join(ctx.dir, KNOWN_HOSTS_FILE), opts);
}

/**
 * The one-shot form: opens the sessions, runs `fn` on every host in `hosts`, prints the per-host
 * summary and closes. Never rejects for a host's failure; check `outcomes.every((o) => o.ok)`.
 */
export async function forEachHost<T>(
  ctx: SshContext,
  hosts: readonly Host[],
  opts: SshOptions,
  fn: (session: Session) => Promise<T>,
  summaryTitle?: string,
): Promise<HostOutcome<T>[]> {
  const pool = await openSessions(ctx, opts);
  try {
    return await pool.forEachHost(hosts, fn);
  } finally {
    await pool.close();
    pool.printSummary(summaryTitle);
  }
}
