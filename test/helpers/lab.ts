/**
 * Test support (used by test/lab*, test/ssh*, test/prep* and later the etcd and distribution
 * tests): a throwaway lab in a temp workspace on a subnet nothing on this machine routes, the
 * real scripts run as child processes, commands run inside a host through its namespaces, and a
 * cleanup that removes everything by name even when `--destroy` itself is what broke.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, existsSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { exec } from '../../lib/exec.ts';
import { createLogger } from '../../lib/log.ts';
import { freeSubnet, bridgeName, vethName, netnsName, LAB_ROOT, type RouteEntry, type AddrEntry } from '../../lib/lab/plan.ts';
import { findMarked, childrenOf, kill, waitGone } from '../../lib/lab/system.ts';
import type { LabRecord } from '../../lib/lab/provider.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const quiet = createLogger({ verbose: false, write: () => {} });

export interface TestHost {
  name: string;
  role: 'loadbalancer' | 'controller' | 'worker';
  privateIp: string;
}

export interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestLab {
  cluster: string;
  /** The temp directory holding inventory.json and the workspace `ws/`. */
  root: string;
  dir: string;
  inventoryPath: string;
  cidr: string;
  hosts: TestHost[];
  host(name: string): TestHost;
  /** Runs `scripts/<name>.mjs --inventory ... --dir ... <args>` and returns its exit code and output. */
  script(name: string, args?: readonly string[], opts?: { inventoryPath?: string; dir?: string; asUser?: string }): Promise<ScriptResult>;
  record(): LabRecord | undefined;
  /** PID (on the machine) of the host's first process, from the lab's record. */
  initPid(host: string): number | undefined;
  /** Runs `sh -c cmd` inside the host's mount, UTS, network and PID namespaces (not over SSH). */
  inHost(host: string, cmd: string): Promise<string>;
  /** Ends everything of this lab by name and removes the temp directory. Safe to call twice. */
  cleanup(): Promise<void>;
}

/** The shipped inventory's six hosts (lb-0, controller-0..2, worker-0..1), moved to `/24 base`. */
function sixHosts(base: string): TestHost[] {
  const shipped = JSON.parse(readFileSync(join(REPO, 'inventory.json'), 'utf8')) as {
    loadBalancer: { name: string; privateIp: string };
    controllers: { name: string; privateIp: string }[];
    workers: { name: string; privateIp: string }[];
  };
  const move = (ip: string) => `${base}.${ip.split('.')[3]}`;
  return [
    { name: shipped.loadBalancer.name, role: 'loadbalancer', privateIp: move(shipped.loadBalancer.privateIp) },
    ...shipped.controllers.map((c) => ({ name: c.name, role: 'controller' as const, privateIp: move(c.privateIp) })),
    ...shipped.workers.map((w) => ({ name: w.name, role: 'worker' as const, privateIp: move(w.privateIp) })),
  ];
}

/** A /24 under 10.250.0.0/16 that no route or address on this machine overlaps. */
export async function freeTestSubnet(): Promise<string> {
  const routes = JSON.parse((await exec('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])).stdout || '[]') as RouteEntry[];
  const addrs = JSON.parse((await exec('ip', ['-j', '-4', 'addr', 'show'])).stdout || '[]') as AddrEntry[];
  const start = (process.pid * 7) % 250;
  const candidates = Array.from({ length: 250 }, (_, i) => `10.250.${(start + i) % 250}.0/24`);
  const found = freeSubnet(routes, addrs, candidates);
  if (!found) throw new Error('no free 10.250.x.0/24 for a test lab');
  return found;
}

export function inventoryFor(cluster: string, cidr: string, hosts: readonly TestHost[]): object {
  const pick = (h: TestHost) => ({ name: h.name, privateIp: h.privateIp });
  return {
    provider: 'lab',
    cluster: { name: cluster },
    lab: { cidr },
    loadBalancer: pick(hosts.find((h) => h.role === 'loadbalancer')!),
    controllers: hosts.filter((h) => h.role === 'controller').map(pick),
    workers: hosts.filter((h) => h.role === 'worker').map(pick),
  };
}

/**
 * Writes an inventory for a new lab (not yet created: run `lab.script('01-infra')`).
 * `small`: lb-0, controller-0, worker-0. `six`: the shipped layout.
 */
export async function createTestLab(tag: string, layout: 'small' | 'six' = 'small'): Promise<TestLab> {
  const cluster = `t${tag.slice(0, 5)}-${randomBytes(2).toString('hex')}`;
  const cidr = await freeTestSubnet();
  const base = cidr.split('.').slice(0, 3).join('.');
  const hosts: TestHost[] =
    layout === 'six'
      ? sixHosts(base)
      : [
          { name: 'lb-0', role: 'loadbalancer', privateIp: `${base}.5` },
          { name: 'controller-0', role: 'controller', privateIp: `${base}.10` },
          { name: 'worker-0', role: 'worker', privateIp: `${base}.20` },
        ];
  const root = mkdtempSync(join(tmpdir(), `hardway-${tag}-`));
  chmodSync(root, 0o755);
  const dir = join(root, 'ws');
  const inventoryPath = join(root, 'inventory.json');
  writeFileSync(inventoryPath, `${JSON.stringify(inventoryFor(cluster, cidr, hosts), null, 2)}\n`, { mode: 0o644 });

  const lab: TestLab = {
    cluster,
    root,
    dir,
    inventoryPath,
    cidr,
    hosts,
    host: (name) => {
      const h = hosts.find((x) => x.name === name);
      if (!h) throw new Error(`no host ${name}`);
      return h;
    },
    script: (name, args = [], opts = {}) =>
      runScript(name, ['--inventory', opts.inventoryPath ?? inventoryPath, '--dir', opts.dir ?? dir, ...args], opts.asUser),
    record: () => {
      const p = join(LAB_ROOT, cluster, 'lab.json');
      return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as LabRecord) : undefined;
    },
    initPid: (host) => {
      const holder = lab.record()?.hosts[host]?.holderPid;
      return holder ? childrenOf(holder)[0] : undefined;
    },
    inHost: async (host, cmd) => {
      const pid = lab.initPid(host);
      if (!pid) throw new Error(`${host} is not running`);
      return (await exec('nsenter', ['-t', String(pid), '-m', '-u', '-n', '-p', '--', 'sh', '-c', cmd])).stdout;
    },
    cleanup: () => forceCleanup(cluster, hosts.map((h) => h.name), root),
  };
  return lab;
}

export function runScript(name: string, args: readonly string[], asUser?: string): Promise<ScriptResult> {
  const script = join(REPO, 'scripts', `${name}.mjs`);
  const [cmd, argv] = asUser
    ? ['setpriv', ['--reuid', asUser, '--regid', asUser === 'nobody' ? 'nogroup' : asUser, '--clear-groups', '--', process.execPath, script, ...args]]
    : [process.execPath, [script, ...args]];
  return new Promise((resolve) => {
    const child = spawn(cmd, argv as string[], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Removes a lab by its names alone: processes (by marker), veths, netns, bridge, state dir. */
export async function forceCleanup(cluster: string, hostNames: readonly string[], tempRoot?: string): Promise<void> {
  const rec = (() => {
    try {
      return JSON.parse(readFileSync(join(LAB_ROOT, cluster, 'lab.json'), 'utf8')) as LabRecord;
    } catch {
      return undefined;
    }
  })();
  const names = new Set([...hostNames, ...Object.keys(rec?.hosts ?? {})]);
  const marked = findMarked(`hardway-lab:${cluster}/`);
  for (const m of marked) {
    for (const c of childrenOf(m.pid)) kill(c);
    kill(m.pid);
  }
  await waitGone(marked.map((m) => m.pid), 5000);
  const tryIp = async (args: string[]) => {
    try {
      await exec('ip', args, {}, quiet);
    } catch {
      /* not there */
    }
  };
  for (const n of names) {
    const ns = netnsName(cluster, n);
    try {
      const pids = (await exec('ip', ['netns', 'pids', ns])).stdout.split(/\s+/).filter(Boolean).map(Number);
      pids.forEach((p) => kill(p));
      await waitGone(pids, 5000);
    } catch {
      /* no such netns */
    }
    await tryIp(['link', 'del', vethName(cluster, n)]);
    await tryIp(['netns', 'del', ns]);
  }
  await tryIp(['link', 'del', bridgeName(cluster)]);
  rmSync(join(LAB_ROOT, cluster), { recursive: true, force: true });
  if (tempRoot) rmSync(tempRoot, { recursive: true, force: true });
}
