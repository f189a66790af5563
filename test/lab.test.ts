// The lab provider end to end: 01-infra makes real namespaces running real sshd, and --destroy
// leaves nothing. Needs root. Every assertion reads the real state (ip, /proc, ssh, nsenter).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, statSync, writeFileSync, mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir, hostname as machineHostname } from 'node:os';
import { exec } from '../lib/exec.ts';
import { createTestLab, inventoryFor, runScript, type TestLab } from './helpers/lab.ts';
import { bridgeName, vethName, netnsName, LAB_ROOT, overlappingRoutes, bridgeAddress, planLab, type RouteEntry } from '../lib/lab/plan.ts';
import { parseCidr, type Cidr } from '../lib/cidr.ts';
import { parseInventory } from '../lib/inventory.ts';
import { findMarked, procAlive } from '../lib/lab/system.ts';
import { parseKnownHosts } from '../lib/ssh/known-hosts.ts';

let lab: TestLab;
const cleanups: (() => Promise<void>)[] = [];

async function sh(cmd: string, args: string[]): Promise<string> {
  return (await exec(cmd, args)).stdout;
}

async function sshTo(l: TestLab, ip: string, cmd: string): Promise<{ code: number; out: string }> {
  const r = await exec(
    'ssh',
    ['-i', join(l.dir, 'ssh/id_ed25519'), '-o', `UserKnownHostsFile=${join(l.dir, 'ssh/known_hosts')}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5', `root@${ip}`, cmd],
    { okCodes: [1, 2, 255] },
  );
  return { code: r.code, out: r.stdout + r.stderr };
}

const linkNames = async () => (JSON.parse(await sh('ip', ['-j', 'link', 'show'])) as { ifname: string }[]).map((l) => l.ifname);
const netnsList = async () => ((JSON.parse((await sh('ip', ['-j', 'netns', 'list'])) || '[]') as { name: string }[]).map((n) => n.name));

test.before(async () => {
  lab = await createTestLab('lab');
  cleanups.push(() => lab.cleanup());
});

test.after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('pure: bridge address is the highest free address; names fit IFNAMSIZ', () => {
  const c = parseCidr('10.240.0.0/24') as Cidr;
  const h = (ip: string) => ({ name: 'x', role: 'worker' as const, privateIp: ip });
  assert.is(bridgeAddress(c, [h('10.240.0.10')]), '10.240.0.254');
  assert.is(bridgeAddress(c, [h('10.240.0.254')]), '10.240.0.253');
  assert.is(bridgeAddress(parseCidr('10.0.0.0/30') as Cidr, [h('10.0.0.1'), h('10.0.0.2')]), undefined);
  assert.is(bridgeName('hardway'), 'hw-hardway');
  assert.ok(bridgeName('a-very-long-cluster-name').length <= 15);
  assert.is.not(bridgeName('a-very-long-cluster-name'), bridgeName('a-very-long-cluster-other'));
  assert.ok(vethName('hardway', 'controller-0').length <= 15);
  assert.is.not(vethName('hardway', 'controller-0'), vethName('hardway', 'controller-1'));
});

test('pure: overlap check names the clashing route, ignores default routes and the lab bridge', () => {
  const cidr = parseCidr('10.240.0.0/24') as Cidr;
  const routes: RouteEntry[] = [
    { dst: 'default', gateway: '192.0.2.1', dev: 'eth0' },
    { dst: '10.240.0.0/24', dev: 'hw-hardway' },
    { dst: '10.240.0.254', dev: 'hw-hardway', table: 'local', type: 'local' },
    { dst: '10.0.0.0/8', gateway: '192.0.2.9', dev: 'eth0' },
    { dst: '10.241.0.0/24', dev: 'eth1' },
  ];
  assert.equal(overlappingRoutes(cidr, routes, [], 'hw-hardway'), ['route "10.0.0.0/8 via 192.0.2.9 dev eth0"']);
  assert.equal(overlappingRoutes(cidr, routes.slice(0, 3), [], 'hw-hardway'), []);
  assert.equal(overlappingRoutes(cidr, [], [{ ifname: 'eth9', addr_info: [{ family: 'inet', local: '10.240.0.77', prefixlen: 16 }] }], 'x'), ['address 10.240.0.77/16 on eth9']);
  assert.equal(overlappingRoutes(cidr, [{ dst: '10.240.0.0/24', type: 'blackhole' }], [], 'x'), ['route "blackhole 10.240.0.0/24"']);
});

test('01-infra makes one namespace per host with sshd reachable under strict host key checking', async () => {
  const r = await lab.script('01-infra');
  assert.is(r.code, 0, r.stderr);
  const links = await linkNames();
  assert.ok(links.includes(bridgeName(lab.cluster)), 'bridge exists');
  const netns = await netnsList();
  for (const h of lab.hosts) {
    assert.ok(links.includes(vethName(lab.cluster, h.name)), `veth of ${h.name}`);
    assert.ok(netns.includes(netnsName(lab.cluster, h.name)), `netns of ${h.name}`);
    // The address is the inventory's, and there is no default route.
    const addr = await sh('ip', ['-n', netnsName(lab.cluster, h.name), '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    assert.match(addr, `${h.privateIp}/24`);
    const routes = await sh('ip', ['-n', netnsName(lab.cluster, h.name), 'route', 'show', 'table', 'all']);
    assert.not.match(routes, /default/);
    // Real sshd, strict checking against the workspace's known_hosts, a neutral hostname to begin with.
    const s = await sshTo(lab, h.privateIp, 'hostname; ls /etc/ssh | grep ssh_host_');
    assert.is(s.code, 0, s.out);
    const [name, ...keys] = s.out.trim().split('\n');
    assert.match(name!, /^lab-[0-9a-f]{6}$/);
    assert.equal(keys, ['ssh_host_ed25519_key', 'ssh_host_ed25519_key.pub'], 'only its own host key');
  }
  // Workspace files.
  const key = join(lab.dir, 'ssh/id_ed25519');
  assert.is(statSync(key).mode & 0o777, 0o600);
  assert.match(readFileSync(key, 'utf8'), /^-----BEGIN OPENSSH PRIVATE KEY-----/);
  assert.not.match(r.stderr + r.stdout, /PRIVATE KEY/);
  const kh = parseKnownHosts(readFileSync(join(lab.dir, 'ssh/known_hosts'), 'utf8'));
  assert.is(kh.length, lab.hosts.length);
  for (const h of lab.hosts) assert.ok(kh.some((e) => e.hosts === `${h.privateIp},${h.name}` && e.keyType === 'ssh-ed25519'), `known_hosts line for ${h.name}`);
  const targets = JSON.parse(readFileSync(join(lab.dir, 'infra/ssh.json'), 'utf8'));
  assert.equal(targets.hosts['worker-0'], { address: lab.host('worker-0').privateIp, port: 22, user: 'root' });
});

test('each host has private /etc, /var, /root ... and a read-only rest; nothing reaches the machine', async () => {
  const c = lab.host('controller-0');
  const w = lab.host('worker-0');
  const probe = `/etc/hardway-probe-${lab.cluster}`;
  const s = await sshTo(lab, c.privateIp, `echo mine > ${probe} && echo v > /var/hardway-probe && echo r > /root/probe && cat ${probe}; touch /hardway-probe 2>&1 || true; hostname x-${lab.cluster}`);
  assert.is(s.code, 0, s.out);
  assert.match(s.out, /mine/);
  assert.match(s.out, /Read-only file system/);
  assert.not.ok(existsSync(probe), 'not on the machine');
  assert.not.ok(existsSync('/var/hardway-probe'));
  assert.not.ok(existsSync('/hardway-probe'));
  const other = await sshTo(lab, w.privateIp, `cat ${probe} 2>&1; hostname`);
  assert.match(other.out, /No such file/);
  assert.not.match(other.out, /x-/);
  assert.is.not(machineHostname(), `x-${lab.cluster}`, "the machine's hostname is untouched");
  // The overlay mounts exist only inside the host's mount namespace.
  const machineMounts = readFileSync('/proc/self/mountinfo', 'utf8');
  assert.not.match(machineMounts, join(LAB_ROOT, lab.cluster));
  assert.match(await lab.inHost('controller-0', 'cat /proc/self/mountinfo'), join(LAB_ROOT, lab.cluster, 'controller-0', 'upper', 'etc'));
});

test('re-running 01-infra changes nothing and keeps every process and key', async () => {
  const before = lab.record()!;
  const kh = readFileSync(join(lab.dir, 'ssh/known_hosts'), 'utf8');
  const r = await lab.script('01-infra');
  assert.is(r.code, 0, r.stderr);
  for (const h of lab.hosts) assert.match(r.stderr, `${h.name}: already running`);
  assert.match(r.stderr, /already up/);
  const after = lab.record()!;
  for (const h of lab.hosts) assert.is(after.hosts[h.name]!.holderPid, before.hosts[h.name]!.holderPid);
  assert.is(readFileSync(join(lab.dir, 'ssh/known_hosts'), 'utf8'), kh);
});

test('a host whose processes died is restarted by a re-run, with its disk and key intact', async () => {
  const pid = lab.initPid('worker-0')!;
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 50 && procAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  const down = await sshTo(lab, lab.host('worker-0').privateIp, 'true');
  assert.is.not(down.code, 0, 'worker-0 is down');
  const r = await lab.script('01-infra');
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /worker-0: restarted with its disk intact/);
  assert.match(r.stderr, /controller-0: already running/);
  // Strict checking still passes: same host key; a file written before the crash is still there.
  await sshTo(lab, lab.host('worker-0').privateIp, 'echo kept > /etc/kept');
  process.kill(lab.initPid('worker-0')!, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  assert.is((await lab.script('01-infra')).code, 0);
  const s = await sshTo(lab, lab.host('worker-0').privateIp, 'cat /etc/kept');
  assert.is(s.code, 0, s.out);
  assert.match(s.out, /kept/);
});

test('a host made again on an empty disk (as after a reboot) keeps its host key', async () => {
  const kh = readFileSync(join(lab.dir, 'ssh/known_hosts'), 'utf8');
  const pid = lab.initPid('controller-0')!;
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 50 && procAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  rmSync(join(LAB_ROOT, lab.cluster, 'controller-0'), { recursive: true, force: true });
  const r = await lab.script('01-infra');
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /controller-0: new disk, same host key/);
  assert.is(readFileSync(join(lab.dir, 'ssh/known_hosts'), 'utf8'), kh);
  const s = await sshTo(lab, lab.host('controller-0').privateIp, 'hostname; cat /etc/hardway-probe-* 2>&1 || true');
  assert.is(s.code, 0, s.out);
  assert.match(s.out, /^lab-[0-9a-f]{6}\n/, 'a fresh disk');
  assert.match(s.out, /No such file/);
});

test('a subnet that overlaps an existing route is refused (exit 2), naming lab.cidr and the route', async () => {
  // A second lab on the first one's subnet: the first lab's bridge route is "an existing route".
  const root = mkdtempSync(join(tmpdir(), 'hardway-overlap-'));
  cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
  const cluster = `tovl-${process.pid % 1000}`;
  const inv = join(root, 'inventory.json');
  writeFileSync(inv, JSON.stringify(inventoryFor(cluster, lab.cidr, lab.hosts)));
  const r = await runScript('01-infra', ['--inventory', inv, '--dir', join(root, 'ws')]);
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /lab\.cidr/);
  assert.match(r.stderr, `dev ${bridgeName(lab.cluster)}`);
  assert.not.ok((await linkNames()).includes(bridgeName(cluster)), 'nothing was created');
  assert.not.ok(existsSync(join(LAB_ROOT, cluster)));

  // And one of the machine's own routes, if it has a non-default one.
  const routes = JSON.parse(await sh('ip', ['-j', '-4', 'route', 'show'])) as RouteEntry[];
  const mine = routes.find((x) => x.dst !== 'default' && x.dst.includes('/') && !x.dev?.startsWith('hw-') && Number(x.dst.split('/')[1]) >= 16 && Number(x.dst.split('/')[1]) <= 24);
  if (mine) {
    const base = mine.dst.split('/')[0]!.split('.').slice(0, 3).join('.');
    const inv2 = join(root, 'inventory2.json');
    const hosts = lab.hosts.map((h) => ({ ...h, privateIp: `${base}.${h.privateIp.split('.')[3]}` }));
    writeFileSync(inv2, JSON.stringify(inventoryFor(cluster, `${base}.0/24`, hosts)));
    const r2 = await runScript('01-infra', ['--inventory', inv2, '--dir', join(root, 'ws2')]);
    assert.is(r2.code, 2, r2.stderr);
    assert.match(r2.stderr, /lab\.cidr/);
    assert.match(r2.stderr, mine.dst);
  }
});

test('another workspace cannot take over a running lab of the same name', async () => {
  const r = await lab.script('01-infra', [], { dir: join(lab.root, 'other-ws') });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /already runs on this machine for the workspace/);
});

test('without root the lab says so plainly (exit 2) and changes nothing', async () => {
  const root = mkdtempSync(join(tmpdir(), 'hardway-nonroot-'));
  chmodSync(root, 0o777);
  cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
  const inv = join(root, 'inventory.json');
  writeFileSync(inv, JSON.stringify(inventoryFor('tnonroot', '10.250.251.0/24', lab.hosts.map((h) => ({ ...h, privateIp: `10.250.251.${h.privateIp.split('.')[3]}` })))), { mode: 0o644 });
  const check = (code: number, stderr: string) => {
    assert.is(code, 2, stderr);
    assert.match(stderr, /01-infra: bad input: provider "lab": needs root/);
    assert.is(stderr.trim().split('\n').length, 1, 'one sentence');
  };
  // In this process, as uid 65534 as far as the code can tell, through the real runner.
  const { runStep } = await import('../lib/runner.ts');
  const { infraStep } = await import('../lib/infra/step.ts');
  const getuid = process.getuid;
  const write = process.stderr.write;
  let err = '';
  process.getuid = () => 65534;
  process.stderr.write = ((chunk: string) => ((err += chunk), true)) as typeof process.stderr.write;
  let code: number;
  try {
    code = await runStep(infraStep, ['--inventory', inv, '--dir', join(root, 'ws')]);
  } finally {
    process.getuid = getuid;
    process.stderr.write = write;
  }
  check(code, err);
  // And really as nobody, when nobody can read this checkout (CI may clone under /root).
  const readable = await exec('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', '--', 'test', '-r', fileURLToPath(new URL('../scripts/01-infra.mjs', import.meta.url))], { okCodes: [1] });
  if (readable.code === 0) {
    const r = await runScript('01-infra', ['--inventory', inv, '--dir', join(root, 'ws2')], 'nobody');
    check(r.code, r.stderr);
  }
  assert.not.ok((await linkNames()).includes(bridgeName('tnonroot')));
  assert.not.ok(existsSync(join(LAB_ROOT, 'tnonroot')));
});

test('planLab refuses a subnet with no room for the bridge address', () => {
  const inv = parseInventory({
    provider: 'lab', cluster: { name: 'tiny' }, lab: { cidr: '10.9.9.0/30' },
    loadBalancer: { name: 'lb', privateIp: '10.9.9.1' }, controllers: [{ name: 'c', privateIp: '10.9.9.2' }], workers: [],
  });
  assert.throws(() => planLab(inv), /no address left/);
});

test('--destroy removes links, namespaces, processes, mounts and state; a second destroy is a no-op', async () => {
  const pids = Object.values(lab.record()!.hosts).map((h) => h.holderPid!);
  const r = await lab.script('01-infra', ['--destroy']);
  assert.is(r.code, 0, r.stderr);
  const links = await linkNames();
  assert.not.ok(links.includes(bridgeName(lab.cluster)));
  for (const h of lab.hosts) assert.not.ok(links.includes(vethName(lab.cluster, h.name)));
  const netns = await netnsList();
  for (const h of lab.hosts) assert.not.ok(netns.includes(netnsName(lab.cluster, h.name)));
  for (const p of pids) assert.not.ok(procAlive(p), `holder ${p} ended`);
  assert.is(findMarked(`hardway-lab:${lab.cluster}/`).length, 0);
  assert.not.match(readFileSync('/proc/self/mountinfo', 'utf8'), join(LAB_ROOT, lab.cluster));
  assert.not.ok(existsSync(join(LAB_ROOT, lab.cluster)));
  const routes = await sh('ip', ['-4', 'route', 'show', 'table', 'all']);
  assert.not.match(routes, lab.cidr);
  // The workspace keeps the login key, loses what pointed at the hosts.
  assert.ok(existsSync(join(lab.dir, 'ssh/id_ed25519')));
  assert.not.ok(existsSync(join(lab.dir, 'infra/ssh.json')));
  assert.not.ok(existsSync(join(lab.dir, 'ssh/known_hosts')));
  assert.not.ok(existsSync(join(lab.dir, 'lab')), 'the copies of the host keys are gone');
  const again = await lab.script('01-infra', ['--destroy']);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stderr, /already gone/);
});

test.run();
