/**
 * The lab's effects on the machine: `ip` for links and namespaces, /proc for processes, a TCP
 * probe for sshd. Every command goes through lib/exec.ts, so `--verbose` shows it.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { exec } from '../exec.ts';
import type { Logger } from '../log.ts';
import type { RouteEntry, AddrEntry } from './plan.ts';

export interface LinkEntry {
  ifname: string;
  link_type?: string;
  master?: string;
  operstate?: string;
  flags?: string[];
  ifalias?: string;
  linkinfo?: { info_kind?: string };
}

async function ipJson<T>(args: string[], log: Logger, subject = ''): Promise<T> {
  const r = await exec('ip', ['-j', ...args], { subject }, log);
  const text = r.stdout.trim();
  return (text === '' ? [] : JSON.parse(text)) as T;
}

export function ip(args: string[], log: Logger, subject = ''): Promise<unknown> {
  return exec('ip', args, { subject }, log);
}

export const readRoutes = (log: Logger) => ipJson<RouteEntry[]>(['-4', 'route', 'show', 'table', 'all'], log);
export const readAddrs = (log: Logger) => ipJson<AddrEntry[]>(['-4', 'addr', 'show'], log);
export const readLinks = (log: Logger) => ipJson<LinkEntry[]>(['-d', 'link', 'show'], log);

export async function netnsNames(log: Logger): Promise<string[]> {
  const list = await ipJson<{ name: string }[]>(['netns', 'list'], log);
  return list.map((n) => n.name);
}

export async function netnsLinks(netns: string, log: Logger, subject: string): Promise<LinkEntry[]> {
  return ipJson<LinkEntry[]>(['-n', netns, 'link', 'show'], log, subject);
}

export async function netnsAddrs(netns: string, log: Logger, subject: string): Promise<AddrEntry[]> {
  return ipJson<AddrEntry[]>(['-n', netns, '-4', 'addr', 'show'], log, subject);
}

export async function netnsRoutes(netns: string, log: Logger, subject: string): Promise<RouteEntry[]> {
  return ipJson<RouteEntry[]>(['-n', netns, '-4', 'route', 'show', 'table', 'all'], log, subject);
}

/** Pids of processes in a named network namespace (`ip netns pids`). */
export async function netnsPids(netns: string, log: Logger): Promise<number[]> {
  const r = await exec('ip', ['netns', 'pids', netns], { subject: '' }, log);
  return r.stdout.split(/\s+/).filter(Boolean).map(Number);
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks); undefined if gone or a zombie. */
export function procStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

export function procCmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

export function procAlive(pid: number): boolean {
  return procStartTime(pid) !== undefined;
}

/** The pid is alive, started when we recorded, and carries our marker: only then is it ours. */
export function isOurs(pid: number | undefined, startTime: string | undefined, marker: string): boolean {
  if (!pid || procStartTime(pid) === undefined) return false;
  if (startTime !== undefined && procStartTime(pid) !== startTime) return false;
  return procCmdline(pid).includes(marker);
}

export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Holder processes (`unshare ... <marker>`) whose marker starts with `prefix`, by scanning /proc. */
export function findMarked(prefix: string): { pid: number; marker: string }[] {
  const found: { pid: number; marker: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const args = procCmdline(pid);
    if (args[0] !== 'unshare' && !args[0]?.endsWith('/unshare')) continue;
    const marker = args.find((a) => a.startsWith(prefix));
    if (marker && procAlive(pid)) found.push({ pid, marker });
  }
  return found;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until none of `pids` is alive (zombies count as gone). True if they all went. */
export async function waitGone(pids: readonly number[], ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (pids.every((p) => !procAlive(p))) return true;
    await sleep(50);
  }
  return pids.every((p) => !procAlive(p));
}

export function kill(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

/** True when something at `address:port` answers with an SSH banner within `ms`. */
export function sshAnswers(address: string, port = 22, ms = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: address, port });
    let data = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    sock.on('data', (b) => {
      data += b.toString('latin1');
      if (data.includes('\n')) done(data.startsWith('SSH-2.0-'));
    });
    sock.on('error', () => done(false));
    sock.on('close', () => done(data.startsWith('SSH-2.0-')));
  });
}

/** Mount points in the machine's mount table whose line mentions `text`. */
export function mountsMentioning(text: string): string[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  return lines.filter((l) => l.includes(text));
}

/** Commands the lab needs, with the Debian package that has each. */
export const LAB_TOOLS: Record<string, string> = {
  ip: 'iproute2',
  nsenter: 'util-linux',
  unshare: 'util-linux',
  mount: 'mount',
  mountpoint: 'util-linux',
  mknod: 'coreutils',
  'ssh-keygen': 'openssh-client',
};

export function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((d) => d && existsSync(`${d}/${cmd}`));
}
