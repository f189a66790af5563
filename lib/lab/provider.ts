/**
 * The `lab` provider: the cluster's hosts as network namespaces on this machine, each with its
 * own UTS, mount and PID namespaces, private copy-on-write /etc, /var, /home, /root, /usr, /opt
 * and /srv, and a real OpenSSH sshd with its own host key, all on one bridge in `lab.cidr`.
 * Every later step reaches them over SSH exactly as it reaches EC2 instances. See README.md, "01-infra with the lab provider".
 *
 * What goes where:
 *   workspace  <dir>/ssh/id_ed25519(.pub)   the login key (kept by --destroy)
 *              <dir>/ssh/known_hosts         each host's key under its private IP and name
 *              <dir>/lab/<host>/             a copy of each host's key, so a host made again
 *                                            after a reboot keeps its identity
 *              <dir>/infra/ssh.json          address, port 22, user root for each host
 *              <dir>/infra/hosts.json        the hosts (no public addresses in a lab)
 *   machine    /run/hardway-lab/<cluster>/   lab.json (what exists, pids), init.sh (a copy of
 *                                            the hosts' first process), and per host: upper/ and
 *                                            work/ (its disk), console.log (its sshd's output)
 *              bridge hw-<cluster>, veths hwv-<hash>, netns hw-<cluster>-<host>
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync, chmodSync, chownSync, statSync, lstatSync, openSync, closeSync, readdirSync, rmdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Context, StepResult } from '../runner.ts';
import type { InfraProvider, SshTargets } from '../infra/provider.ts';
import { SSH_TARGETS_FILE, KNOWN_HOSTS_FILE } from '../infra/provider.ts';
import { DISCOVERED_HOSTS_FILE, type DiscoveredHosts } from '../inventory.ts';
import { InputError } from '../errors.ts';
import { exec, commandLine, mapLimit } from '../exec.ts';
import { writeFileAtomic, PUBLIC_MODE, SECRET_MODE } from '../fsutil.ts';
import type { Logger } from '../log.ts';
import { fingerprint, parsePublicKeyLine, blobType } from '../ssh/known-hosts.ts';
import {
  planLab,
  overlappingRoutes,
  freeSubnet,
  subnetCandidates,
  renderSshdConfig,
  INIT_SCRIPT,
  OVERLAY_DIRS,
  LAB_ROOT,
  type LabPlan,
  type LabHostPlan,
} from './plan.ts';
import { ensureLoginKey, mergeKnownHosts, removeKnownHosts, type HostKeyRecord } from './keys.ts';
import {
  ip,
  readRoutes,
  readAddrs,
  readLinks,
  netnsNames,
  netnsLinks,
  netnsAddrs,
  netnsRoutes,
  netnsPids,
  procStartTime,
  isOurs,
  childrenOf,
  findMarked,
  waitGone,
  kill,
  sleep,
  sshAnswers,
  mountsMentioning,
  procAlive,
  LAB_TOOLS,
  onPath,
} from './system.ts';

/** What the lab records about itself in `<LAB_ROOT>/<cluster>/lab.json`. */
export interface LabRecord {
  version: 1;
  cluster: string;
  /** The workspace that made this lab: another workspace may not take it over. */
  workspace: string;
  cidr: string;
  bridge: string;
  bridgeAddress: string;
  hosts: Record<string, LabHostRecord>;
}

export interface LabHostRecord {
  ip: string;
  netns: string;
  veth: string;
  /** The `unshare` process holding the host's namespaces, and its start time (to rule out pid reuse). */
  holderPid?: number;
  holderStart?: string;
}

const RECORD_FILE = 'lab.json';
/** In the workspace: a copy of each lab host's key (`<dir>/lab/<host>/`), removed by --destroy. */
export const LAB_KEYS_DIR = 'lab';
const SSHD = '/usr/sbin/sshd';
const START_TIMEOUT_MS = 15_000;
const SUBJECT = 'lab';

function requireRoot(): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new InputError(
      'provider "lab"',
      'needs root, because it creates network namespaces, a bridge, veth links and mounts on this machine; run it again as root (for example with sudo)',
    );
  }
}

function recordPath(plan: LabPlan): string {
  return join(plan.root, RECORD_FILE);
}

export function readLabRecord(plan: LabPlan): LabRecord | undefined {
  const path = recordPath(plan);
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8')) as LabRecord;
}

function saveRecord(plan: LabPlan, rec: LabRecord): void {
  mkdirSync(plan.root, { recursive: true, mode: 0o700 });
  writeFileAtomic(recordPath(plan), `${JSON.stringify(rec, null, 2)}\n`, 0o600);
}

function checkOwner(rec: LabRecord | undefined, ctx: Context): void {
  if (rec && rec.workspace !== ctx.dir) {
    throw new InputError(
      `${ctx.inventory.source}: cluster.name`,
      `a lab named "${rec.cluster}" already runs on this machine for the workspace ${rec.workspace}; destroy it from there (01-infra --destroy --dir ${rec.workspace}) or choose another cluster.name`,
    );
  }
}

/** Missing tools or kernel features, as sentences. */
function missingPrerequisites(): string[] {
  const problems: string[] = [];
  for (const [cmd, pkg] of Object.entries(LAB_TOOLS)) {
    if (!onPath(cmd)) problems.push(`${cmd} is not installed (Debian package ${pkg})`);
  }
  if (!existsSync(SSHD)) problems.push(`${SSHD} is not installed (Debian package openssh-server)`);
  const fs = existsSync('/proc/filesystems') ? readFileSync('/proc/filesystems', 'utf8') : '';
  if (!/\boverlay\b/.test(fs)) problems.push('the kernel has no overlay filesystem (modprobe overlay)');
  if (!existsSync('/proc/self/ns/net')) problems.push('the kernel has no network namespaces');
  return problems;
}

/** Refuses a lab.cidr that overlaps a route or address the machine already has (other than the lab's own bridge). */
async function checkSubnet(ctx: Context, plan: LabPlan): Promise<void> {
  const [routes, addrs] = await Promise.all([readRoutes(ctx.log), readAddrs(ctx.log)]);
  const clash = overlappingRoutes(plan.cidr, routes, addrs, plan.bridge);
  if (clash.length === 0) return;
  const free = freeSubnet(routes, addrs, subnetCandidates());
  throw new InputError(
    `${ctx.inventory.source}: lab.cidr`,
    `"${plan.cidr.text}" overlaps what this machine already routes: ${clash.join('; ')}. ` +
      `The lab will not shadow an existing network; choose a lab.cidr (and host addresses) that nothing here uses${free ? `, for example ${free}` : ''}`,
  );
}

function overlayDirs(): string[] {
  return OVERLAY_DIRS.filter((d) => {
    try {
      const st = lstatSync(`/${d}`);
      return st.isDirectory() && !st.isSymbolicLink();
    } catch {
      return false;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// up

async function ensureBridge(ctx: Context, plan: LabPlan, rec: LabRecord): Promise<string> {
  const log = ctx.log;
  const mark = `hardway-lab:${plan.cluster}`;
  const links = await readLinks(log);
  const br = links.find((l) => l.ifname === plan.bridge);
  const changes: string[] = [];
  if (!br) {
    await ip(['link', 'add', plan.bridge, 'type', 'bridge'], log, SUBJECT);
    await ip(['link', 'set', 'dev', plan.bridge, 'alias', mark], log, SUBJECT);
    changes.push('created');
  } else {
    if (br.linkinfo?.info_kind !== 'bridge') throw new Error(`a link named ${plan.bridge} exists and is not a bridge; remove it or choose another cluster.name`);
    if (br.ifalias !== mark && rec.bridge !== plan.bridge) throw new Error(`a bridge named ${plan.bridge} exists that this lab did not create; remove it or choose another cluster.name`);
  }
  const [addrs] = await Promise.all([readAddrs(log)]);
  const mine = addrs.find((a) => a.ifname === plan.bridge)?.addr_info ?? [];
  if (!mine.some((a) => a.local === plan.bridgeAddress && a.prefixlen === plan.cidr.prefix)) {
    await ip(['addr', 'add', `${plan.bridgeAddress}/${plan.cidr.prefix}`, 'dev', plan.bridge], log, SUBJECT);
    changes.push(`address ${plan.bridgeAddress}/${plan.cidr.prefix} added`);
  }
  if (!br || !(br.flags ?? []).includes('UP')) {
    await ip(['link', 'set', 'dev', plan.bridge, 'up'], log, SUBJECT);
    if (br) changes.push('set up');
  }
  const what = `bridge ${plan.bridge} (${plan.bridgeAddress}/${plan.cidr.prefix}, this machine's address on the lab network)`;
  log.info(SUBJECT, changes.length ? `${what}: ${changes.join(', ')}` : `${what} already up`);
  return changes.length ? 'changed' : 'already';
}

/** Namespace, veth pair, address, no default route. Returns what it changed. */
async function ensureHostNetwork(ctx: Context, plan: LabPlan, hp: LabHostPlan, rec: LabRecord): Promise<string[]> {
  const log = ctx.log;
  const name = hp.host.name;
  const changes: string[] = [];
  if (!(await netnsNames(log)).includes(hp.netns)) {
    await ip(['netns', 'add', hp.netns], log, name);
    changes.push(`netns ${hp.netns} created`);
  }
  let links = await readLinks(log);
  let veth = links.find((l) => l.ifname === hp.veth);
  const inner = (await netnsLinks(hp.netns, log, name)).find((l) => l.ifname === 'eth0');
  if (veth && !inner) {
    // The machine's end survived but its peer is not in this netns (the netns was replaced).
    await ip(['link', 'del', hp.veth], log, name);
    veth = undefined;
  }
  if (!veth) {
    await ip(['link', 'add', hp.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', hp.netns], log, name);
    await ip(['link', 'set', 'dev', hp.veth, 'alias', hp.marker], log, name);
    changes.push(`veth ${hp.veth} created`);
    links = await readLinks(log);
    veth = links.find((l) => l.ifname === hp.veth);
  }
  if (veth?.master !== plan.bridge) {
    await ip(['link', 'set', 'dev', hp.veth, 'master', plan.bridge], log, name);
    if (!changes.some((c) => c.startsWith('veth'))) changes.push(`veth ${hp.veth} attached to ${plan.bridge}`);
  }
  if (!(veth?.flags ?? []).includes('UP')) await ip(['link', 'set', 'dev', hp.veth, 'up'], log, name);
  const inside = await netnsLinks(hp.netns, log, name);
  for (const dev of ['lo', 'eth0']) {
    if (!(inside.find((l) => l.ifname === dev)?.flags ?? []).includes('UP')) await ip(['-n', hp.netns, 'link', 'set', 'dev', dev, 'up'], log, name);
  }
  const want = `${hp.host.privateIp}/${plan.cidr.prefix}`;
  const have = (await netnsAddrs(hp.netns, log, name)).find((a) => a.ifname === 'eth0')?.addr_info ?? [];
  if (!have.some((a) => `${a.local}/${a.prefixlen}` === want)) {
    if (have.length > 0) await ip(['-n', hp.netns, 'addr', 'flush', 'dev', 'eth0'], log, name);
    await ip(['-n', hp.netns, 'addr', 'add', want, 'dev', 'eth0'], log, name);
    changes.push(`eth0 ${want}`);
  }
  // A lab host reaches its subnet and nothing else: never a default route.
  const defaults = (await netnsRoutes(hp.netns, log, name)).filter((r) => r.dst === 'default');
  for (const r of defaults) {
    await ip(['-n', hp.netns, 'route', 'del', 'default', ...(r.table ? ['table', r.table] : [])], log, name);
    ctx.log.warn(name, `removed a default route (${r.gateway ?? r.dev ?? '?'}) that someone added: lab hosts have no way out`);
  }
  rec.hosts[name] = { ...rec.hosts[name], ip: hp.host.privateIp, netns: hp.netns, veth: hp.veth };
  return changes;
}

/** The host's disk: overlay dirs; on first boot its host key, hostname and hidden machine keys. */
async function ensureDisk(ctx: Context, hp: LabHostPlan, dirs: readonly string[], publicKey: string, cluster: string): Promise<boolean> {
  const log = ctx.log;
  const name = hp.host.name;
  const upper = join(hp.stateDir, 'upper');
  for (const d of dirs) {
    mkdirSync(join(upper, d), { recursive: true });
    mkdirSync(join(hp.stateDir, 'work', d), { recursive: true });
    const st = statSync(`/${d}`);
    chmodSync(join(upper, d), st.mode & 0o7777);
    chownSync(join(upper, d), st.uid, st.gid);
  }
  const sshDir = join(upper, 'etc', 'ssh');
  const hostKey = join(sshDir, 'ssh_host_ed25519_key');
  const firstBoot = !existsSync(hostKey);
  mkdirSync(sshDir, { recursive: true, mode: 0o755 });
  if (firstBoot) {
    rmSync(`${hostKey}.pub`, { force: true });
    // The host's identity outlives its disk (a reboot empties /run): a copy of the key is kept in
    // the workspace until --destroy, so known_hosts stays right when the host is made again.
    const kept = join(ctx.dir, LAB_KEYS_DIR, name, 'ssh_host_ed25519_key');
    if (existsSync(kept) && existsSync(`${kept}.pub`)) {
      writeFileAtomic(hostKey, readFileSync(kept), SECRET_MODE);
      writeFileAtomic(`${hostKey}.pub`, readFileSync(`${kept}.pub`), PUBLIC_MODE);
      log.info(name, `new disk, same host key (kept in ${dirname(kept)})`);
    } else {
      await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `root@${name} (hardway lab ${cluster})`, '-f', hostKey], { subject: name }, log);
      mkdirSync(dirname(kept), { recursive: true, mode: 0o700 });
      writeFileAtomic(kept, readFileSync(hostKey), SECRET_MODE);
      writeFileAtomic(`${kept}.pub`, readFileSync(`${hostKey}.pub`), PUBLIC_MODE);
    }
    // Hide the machine's own host keys from this host: it has exactly one host key, its own.
    for (const f of readdirSync('/etc/ssh').filter((f) => f.startsWith('ssh_host_') && !f.startsWith('ssh_host_ed25519_key'))) {
      await exec('mknod', [join(sshDir, f), 'c', '0', '0'], { subject: name }, log);
    }
    writeFileAtomic(join(upper, 'etc', 'hostname'), `lab-${randomBytes(3).toString('hex')}\n`, PUBLIC_MODE);
  }
  writeFileAtomic(join(sshDir, 'sshd_config'), renderSshdConfig(hp, cluster), PUBLIC_MODE);
  const rootSsh = join(upper, 'root', '.ssh');
  mkdirSync(rootSsh, { recursive: true, mode: 0o700 });
  chmodSync(rootSsh, 0o700);
  if (firstBoot) {
    // root's own SSH keys and shell start-up files of the machine are not the host's: a fresh
    // Debian root has the stock .bashrc and .profile (and whatever the machine's root sources,
    // like a pyenv init, would slow every remote command down).
    if (existsSync('/root/.ssh')) {
      for (const f of readdirSync('/root/.ssh').filter((f) => f !== 'authorized_keys' && !existsSync(join(rootSsh, f)))) {
        await exec('mknod', [join(rootSsh, f), 'c', '0', '0'], { subject: name }, log);
      }
    }
    for (const f of ['.bashrc', '.profile']) {
      const stock = [`/usr/share/base-files/dot${f}`, `/etc/skel/${f}`].find((p) => existsSync(p));
      writeFileAtomic(join(upper, 'root', f), stock ? readFileSync(stock) : '', PUBLIC_MODE);
    }
    for (const f of ['.bash_profile', '.bash_login', '.bash_logout'].filter((f) => existsSync(`/root/${f}`))) {
      await exec('mknod', [join(upper, 'root', f), 'c', '0', '0'], { subject: name }, log);
    }
  }
  writeFileAtomic(join(rootSsh, 'authorized_keys'), `${publicKey}\n`, SECRET_MODE);
  return firstBoot;
}

interface Running {
  holder: number;
  init: number | undefined;
}

/** The host's holder process if it is alive and provably ours (recorded pid, else a /proc scan). */
function findRunning(hp: LabHostPlan, rh: LabHostRecord | undefined): Running | undefined {
  let holder: number | undefined;
  if (rh?.holderPid && isOurs(rh.holderPid, rh.holderStart, hp.marker)) holder = rh.holderPid;
  else holder = findMarked(hp.marker).find((m) => m.marker === hp.marker)?.pid;
  if (!holder) return undefined;
  return { holder, init: childrenOf(holder)[0] };
}

async function stopHost(ctx: Context, hp: LabHostPlan, rh: LabHostRecord | undefined): Promise<boolean> {
  const running = findRunning(hp, rh);
  const pids: number[] = [];
  if (running) {
    // SIGKILL to the host's PID 1 ends every process in its PID namespace; the holder follows.
    if (running.init) {
      ctx.log.command(hp.host.name, `kill -KILL ${running.init}  # PID 1 of ${hp.host.name}`);
      kill(running.init);
      pids.push(running.init);
    }
    ctx.log.command(hp.host.name, `kill -KILL ${running.holder}  # the holder of ${hp.host.name}'s namespaces`);
    kill(running.holder);
    pids.push(running.holder);
  }
  // Anything else that joined the host's network namespace (ip netns exec ...) goes too.
  if ((await netnsNames(ctx.log)).includes(hp.netns)) {
    const rest = (await netnsPids(hp.netns, ctx.log)).filter((p) => p !== process.pid);
    for (const p of rest) {
      ctx.log.command(hp.host.name, `kill -KILL ${p}  # in netns ${hp.netns}`);
      kill(p);
    }
    pids.push(...rest);
  }
  if (!(await waitGone(pids, 5000))) throw new Error(`processes ${pids.filter(procAlive).join(', ')} of ${hp.host.name} did not exit`);
  return pids.length > 0;
}

function tail(path: string, lines = 8): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

async function startHost(ctx: Context, plan: LabPlan, hp: LabHostPlan, dirs: readonly string[]): Promise<LabHostRecord> {
  const name = hp.host.name;
  const consoleLog = join(hp.stateDir, 'console.log');
  const args = [`--net=/run/netns/${hp.netns}`, '--', 'unshare', '--uts', '--mount', '--pid', '--fork', '--kill-child', '--propagation', 'private', '/bin/sh', '-c', INIT_SCRIPT, hp.marker, hp.stateDir, ...dirs];
  const at = args.indexOf(INIT_SCRIPT);
  ctx.log.command(name, `${commandLine('nsenter', args.slice(0, at))} "$(cat ${join(plan.root, 'init.sh')})" ${args.slice(at + 1).map((a) => commandLine(a, [])).join(' ')}`);
  const fd = openSync(consoleLog, 'a', 0o600);
  const child = spawn('nsenter', args, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const spawned = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('spawn', () => resolve(child.pid!));
  });
  child.unref();
  const holderStart = procStartTime(spawned);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!procAlive(spawned)) {
      throw new Error(`the host's first process exited before sshd answered; its console (${consoleLog}) says:\n${tail(consoleLog)}`);
    }
    if (await sshAnswers(hp.host.privateIp, 22, 500)) return { ip: hp.host.privateIp, netns: hp.netns, veth: hp.veth, holderPid: spawned, ...(holderStart ? { holderStart } : {}) };
    await sleep(100);
  }
  kill(spawned);
  throw new Error(`sshd did not answer on ${hp.host.privateIp}:22 within ${START_TIMEOUT_MS / 1000}s; console (${consoleLog}):\n${tail(consoleLog)}`);
}

interface HostUp {
  name: string;
  ok: boolean;
  status?: 'started' | 'restarted' | 'already';
  error?: string;
  key?: Buffer;
  pid?: number;
}

async function upHost(ctx: Context, plan: LabPlan, hp: LabHostPlan, rec: LabRecord, publicKey: string, dirs: readonly string[]): Promise<HostUp> {
  const name = hp.host.name;
  const before = rec.hosts[name];
  const running = findRunning(hp, before);
  let status: HostUp['status'];
  if (running && before?.ip === hp.host.privateIp && (await sshAnswers(hp.host.privateIp))) {
    status = 'already';
    rec.hosts[name] = { ...before, holderPid: running.holder, ...(procStartTime(running.holder) ? { holderStart: procStartTime(running.holder)! } : {}) };
  } else {
    if (running) {
      const why = before?.ip !== hp.host.privateIp ? `its address changed to ${hp.host.privateIp}` : 'its sshd does not answer';
      ctx.log.warn(name, `restarting: ${why}`);
      await stopHost(ctx, hp, before);
    }
    const firstBoot = await ensureDisk(ctx, hp, dirs, publicKey, plan.cluster);
    rec.hosts[name] = await startHost(ctx, plan, hp, dirs);
    saveRecord(plan, rec);
    status = firstBoot ? 'started' : 'restarted';
  }
  const pubPath = join(hp.stateDir, 'upper', 'etc', 'ssh', 'ssh_host_ed25519_key.pub');
  const key = parsePublicKeyLine(readFileSync(pubPath, 'utf8'));
  const pid = rec.hosts[name]!.holderPid;
  const words =
    status === 'already'
      ? `already running (holder pid ${pid}); sshd answers on ${hp.host.privateIp}:22`
      : `${status === 'started' ? 'started' : 'restarted with its disk intact'} (holder pid ${pid}): sshd on ${hp.host.privateIp}:22, host key ${blobType(key)} ${fingerprint(key)}`;
  ctx.log.info(name, words);
  return { name, ok: true, status, key, ...(pid ? { pid } : {}) };
}

async function up(ctx: Context): Promise<StepResult> {
  requireRoot();
  const log = ctx.log;
  const plan = planLab(ctx.inventory);
  const missing = missingPrerequisites();
  if (missing.length > 0) throw new Error(`the lab cannot run on this machine: ${missing.join('; ')}`);
  const existing = readLabRecord(plan);
  checkOwner(existing, ctx);
  await checkSubnet(ctx, plan);
  const dirs = overlayDirs();

  if (ctx.dryRun) {
    const links = await readLinks(log);
    const netns = await netnsNames(log);
    log.info(SUBJECT, `would use bridge ${plan.bridge} (${links.some((l) => l.ifname === plan.bridge) ? 'exists' : 'would create'}) with ${plan.bridgeAddress}/${plan.cidr.prefix}`);
    for (const hp of plan.hosts) {
      const running = findRunning(hp, existing?.hosts[hp.host.name]);
      log.info(hp.host.name, running ? `already running (holder pid ${running.holder})` : `would ${netns.includes(hp.netns) ? 'start' : 'create'} netns ${hp.netns} with eth0 ${hp.host.privateIp}/${plan.cidr.prefix} and sshd`);
    }
    return { ok: true, dryRun: true, bridge: plan.bridge };
  }

  const rec: LabRecord = existing ?? {
    version: 1,
    cluster: plan.cluster,
    workspace: ctx.dir,
    cidr: plan.cidr.text,
    bridge: plan.bridge,
    bridgeAddress: plan.bridgeAddress,
    hosts: {},
  };
  rec.cidr = plan.cidr.text;
  rec.bridgeAddress = plan.bridgeAddress;
  saveRecord(plan, rec);
  writeFileSync(join(plan.root, 'init.sh'), `#!/bin/sh\n# The first process of every lab host of ${plan.cluster} (see lib/lab/plan.ts). Arguments: state dir, overlay dirs.\n${INIT_SCRIPT}`, { mode: 0o644 });

  const { publicKey } = await ensureLoginKey(ctx.dir, `hardway@${plan.cluster}`, log);
  await ensureBridge(ctx, plan, rec);
  rec.bridge = plan.bridge;
  saveRecord(plan, rec);

  // Links and namespaces one host at a time (ip netns add is not safe to race); then boot in parallel.
  const failed = new Map<string, string>();
  for (const hp of plan.hosts) {
    try {
      const changes = await ensureHostNetwork(ctx, plan, hp, rec);
      if (changes.length) log.info(hp.host.name, changes.join(', '));
    } catch (e) {
      failed.set(hp.host.name, (e as Error).message);
      log.error(hp.host.name, (e as Error).message);
    }
  }
  saveRecord(plan, rec);
  const results = await mapLimit(plan.hosts, 8, async (hp): Promise<HostUp> => {
    const name = hp.host.name;
    if (failed.has(name)) return { name, ok: false, error: failed.get(name)! };
    try {
      return await upHost(ctx, plan, hp, rec, publicKey, dirs);
    } catch (e) {
      log.error(name, (e as Error).message);
      return { name, ok: false, error: (e as Error).message };
    }
  });
  saveRecord(plan, rec);

  // known_hosts: add hosts it lacks; never replace a recorded key.
  const khPath = join(ctx.dir, KNOWN_HOSTS_FILE);
  const keys: HostKeyRecord[] = results.filter((r) => r.key).map((r) => ({ name: r.name, address: plan.hosts.find((h) => h.host.name === r.name)!.host.privateIp, key: r.key! }));
  const merged = mergeKnownHosts(existsSync(khPath) ? readFileSync(khPath, 'utf8') : '', keys, plan.cluster);
  if (merged.added.length > 0) writeFileAtomic(khPath, merged.text, PUBLIC_MODE);
  log.info(
    SUBJECT,
    `known_hosts ${khPath}: ${merged.added.length ? `recorded ${merged.added.join(', ')}` : 'no new keys'}${merged.already.length ? `; already had ${merged.already.length}` : ''}`,
  );
  for (const c of merged.conflicts) {
    const r = results.find((x) => x.name === c.name)!;
    r.ok = false;
    r.error = `its host key on disk (${c.onDisk}) differs from known_hosts (${c.recorded}); not trusting it. If you replaced it on purpose, remove its lines from ${khPath} and re-run`;
    log.error(c.name, r.error);
  }

  const targets: SshTargets = { hosts: {} };
  const discovered: DiscoveredHosts = { hosts: {} };
  for (const hp of plan.hosts) {
    targets.hosts[hp.host.name] = { address: hp.host.privateIp, port: 22, user: ctx.inventory.ssh.user };
    discovered.hosts[hp.host.name] = {};
  }
  writeFileAtomic(join(ctx.dir, SSH_TARGETS_FILE), `${JSON.stringify(targets, null, 2)}\n`, PUBLIC_MODE);
  writeFileAtomic(join(ctx.dir, DISCOVERED_HOSTS_FILE), `${JSON.stringify(discovered, null, 2)}\n`, PUBLIC_MODE);

  for (const name of Object.keys(rec.hosts).filter((n) => !plan.hosts.some((h) => h.host.name === n))) {
    log.warn(name, 'is no longer in the inventory; it keeps running until 01-infra --destroy removes the whole lab');
  }

  const ok = results.every((r) => r.ok);
  const first = plan.hosts.find((h) => h.host.role === 'controller') ?? plan.hosts[0]!;
  log.info(
    SUBJECT,
    `${results.filter((r) => r.ok).length} of ${results.length} hosts ready. Log in as the steps do: ` +
      `ssh -i ${join(ctx.dir, 'ssh', 'id_ed25519')} -o UserKnownHostsFile=${khPath} root@${first.host.privateIp}`,
  );
  return {
    ok,
    bridge: plan.bridge,
    bridgeAddress: plan.bridgeAddress,
    stateDir: plan.root,
    hosts: Object.fromEntries(results.map((r) => [r.name, { ok: r.ok, ...(r.status ? { status: r.status } : {}), ...(r.pid ? { pid: r.pid } : {}), ...(r.error ? { error: r.error } : {}) }])),
  };
}

// ---------------------------------------------------------------------------------------------
// destroy

/** What of this cluster's lab is still on the machine (by name, record and marker). */
export async function labLeftovers(plan: LabPlan, log: Logger, rec?: LabRecord): Promise<string[]> {
  const veths = new Set([...plan.hosts.map((h) => h.veth), ...Object.values(rec?.hosts ?? {}).map((h) => h.veth)]);
  const netnses = new Set([...plan.hosts.map((h) => h.netns), ...Object.values(rec?.hosts ?? {}).map((h) => h.netns)]);
  const left: string[] = [];
  const links = await readLinks(log);
  for (const l of links) {
    if (l.ifname === plan.bridge || veths.has(l.ifname) || (l.ifalias ?? '').startsWith(`hardway-lab:${plan.cluster}`)) left.push(`link ${l.ifname}`);
  }
  for (const n of await netnsNames(log)) if (netnses.has(n)) left.push(`netns ${n}`);
  for (const m of findMarked(`hardway-lab:${plan.cluster}/`)) left.push(`process ${m.pid} (${m.marker})`);
  for (const m of mountsMentioning(plan.root)) left.push(`mount ${m.split(' ')[4]}`);
  if (existsSync(plan.root)) left.push(`directory ${plan.root}`);
  return left;
}

async function destroy(ctx: Context): Promise<StepResult> {
  requireRoot();
  const log = ctx.log;
  const plan = planLab(ctx.inventory);
  const rec = readLabRecord(plan);
  checkOwner(rec, ctx);

  // Hosts by inventory and by record (a host removed from the inventory since `up` goes too).
  const hostPlans = [...plan.hosts];
  for (const [name, rh] of Object.entries(rec?.hosts ?? {})) {
    if (!hostPlans.some((h) => h.host.name === name)) {
      hostPlans.push({ host: { name, role: 'worker', privateIp: rh.ip }, netns: rh.netns, veth: rh.veth, stateDir: join(plan.root, name), marker: `hardway-lab:${plan.cluster}/${name}` });
    }
  }
  if (ctx.dryRun) {
    const left = await labLeftovers(plan, log, rec);
    log.info(SUBJECT, left.length ? `would remove: ${left.join(', ')}` : 'nothing of this lab exists on this machine');
    return { ok: true, dryRun: true, wouldRemove: left };
  }

  const netns = await netnsNames(log);
  for (const hp of hostPlans) {
    const name = hp.host.name;
    const done: string[] = [];
    if (await stopHost(ctx, hp, rec?.hosts[name])) done.push('processes ended');
    const links = await readLinks(log);
    const veth = links.find((l) => l.ifname === hp.veth);
    if (veth) {
      if (veth.ifalias !== hp.marker && rec?.hosts[name]?.veth !== hp.veth) throw new Error(`link ${hp.veth} exists but was not made by this lab; leaving it`);
      await ip(['link', 'del', hp.veth], log, name);
      done.push(`veth ${hp.veth} deleted`);
    }
    if (netns.includes(hp.netns)) {
      await ip(['netns', 'del', hp.netns], log, name);
      done.push(`netns ${hp.netns} deleted`);
    }
    log.info(name, done.length ? done.join(', ') : 'already gone');
  }
  // Holders nobody recorded (a crash between start and record) carry the marker: end them too.
  for (const m of findMarked(`hardway-lab:${plan.cluster}/`)) {
    log.warn(SUBJECT, `ending stray lab process ${m.pid} (${m.marker})`);
    for (const c of childrenOf(m.pid)) kill(c);
    kill(m.pid);
    await waitGone([m.pid], 5000);
  }
  const links = await readLinks(log);
  const br = links.find((l) => l.ifname === plan.bridge);
  if (br) {
    if (br.ifalias !== `hardway-lab:${plan.cluster}` && rec?.bridge !== plan.bridge) throw new Error(`bridge ${plan.bridge} exists but was not made by this lab; leaving it`);
    await ip(['link', 'del', plan.bridge], log, SUBJECT);
    log.info(SUBJECT, `bridge ${plan.bridge} deleted`);
  }
  const mounts = mountsMentioning(plan.root);
  for (const m of mounts) {
    const target = m.split(' ')[4]!;
    await exec('umount', ['-l', target], { subject: SUBJECT }, log);
  }
  if (existsSync(plan.root)) {
    rmSync(plan.root, { recursive: true, force: true });
    log.info(SUBJECT, `removed the hosts' disks and records in ${plan.root}`);
  }
  try {
    if (existsSync(LAB_ROOT) && readdirSync(LAB_ROOT).length === 0) rmdirSync(LAB_ROOT);
  } catch {
    /* another lab is using it */
  }

  // Workspace: the lab's addresses and host keys go; the login key stays (a new lab accepts it).
  const khPath = join(ctx.dir, KNOWN_HOSTS_FILE);
  if (existsSync(khPath)) {
    const names = hostPlans.flatMap((h) => [h.host.privateIp, h.host.name]);
    const { text, removed } = removeKnownHosts(readFileSync(khPath, 'utf8'), names);
    if (text.trim() === '') rmSync(khPath);
    else writeFileAtomic(khPath, text, PUBLIC_MODE);
    if (removed) log.info(SUBJECT, `removed ${removed} host key line(s) from ${khPath}`);
  }
  for (const f of [SSH_TARGETS_FILE, DISCOVERED_HOSTS_FILE]) rmSync(join(ctx.dir, f), { force: true });
  rmSync(join(ctx.dir, LAB_KEYS_DIR), { recursive: true, force: true });

  const left = await labLeftovers(plan, log, rec);
  if (left.length > 0) log.error(SUBJECT, `still present after destroy: ${left.join(', ')}`);
  else log.info(SUBJECT, `destroyed: no links, namespaces, processes or mounts of lab ${plan.cluster} remain (the login key ${join(ctx.dir, 'ssh', 'id_ed25519')} is kept)`);
  return { ok: left.length === 0, leftovers: left };
}

// ---------------------------------------------------------------------------------------------
// check

async function check(ctx: Context): Promise<StepResult> {
  const log = ctx.log;
  const problems: string[] = [];
  if (typeof process.getuid === 'function' && process.getuid() !== 0) problems.push('not running as root (the lab needs root)');
  problems.push(...missingPrerequisites());
  let plan: LabPlan | undefined;
  try {
    plan = planLab(ctx.inventory);
  } catch (e) {
    problems.push((e as Error).message);
  }
  if (plan && onPath('ip')) {
    try {
      checkOwner(readLabRecord(plan), ctx);
      await checkSubnet(ctx, plan);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  for (const p of problems) log.error(SUBJECT, p);
  if (problems.length === 0) log.info(SUBJECT, `ready: ${ctx.inventory.hosts.length} hosts can be made on ${ctx.inventory.lab.cidr}${plan ? ` (bridge ${plan.bridge}, this machine ${plan.bridgeAddress})` : ''}`);
  return { ok: problems.length === 0, problems };
}

export const labProvider: InfraProvider = { up, destroy, check };
