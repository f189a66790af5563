// End to end on a lab of the shipped six-host layout (on a free test subnet): the real scripts
// 01-infra -> 02-prep -> 03-pki -> 04-kubeconfig -> 05-distribute, one host's sshd killed while
// 05 runs (the others complete, exit 1; after 01-infra restarts the host a re-run completes);
// then a real three-member etcd cluster runs on the controllers from the files 05 put in
// /etc/etcd, peer TLS and client-certificate auth on, and etcdctl on this machine with
// kube-apiserver-etcd-client sees three started members and writes and reads; no host's disk
// holds a private key the map does not give it; `npm start`'s pipeline re-run changes nothing;
// a host whose SSH key changed is refused. Destroying the lab ends etcd with the hosts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, lstatSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '../lib/exec.ts';
import { sha256 } from '../lib/fsutil.ts';
import { readManifest, type Manifest } from '../lib/manifest.ts';
import { createTestLab, type TestLab, type ScriptResult } from './helpers/lab.ts';
import { LAB_ROOT, netnsName } from '../lib/lab/plan.ts';
import { procAlive, procCmdline, sleep } from '../lib/lab/system.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const CONTROLLERS = ['controller-0', 'controller-1', 'controller-2'];
const VICTIM = 'controller-2';

let lab: TestLab;
let manifest: Manifest;
const etcdPids: number[] = [];

test.before(async () => {
  lab = await createTestLab('e2e', 'six');
});

test.after(async () => {
  await lab?.cleanup();
});

const ip = (host: string) => lab.host(host).privateIp;
const must = (r: ScriptResult, what: string) => {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stderr.slice(-3000)}`);
  return r;
};
const summary = (stderr: string, host: string) => stderr.split('\n').find((l) => l.startsWith(`${host}: ok:`) || l.startsWith(`${host}: FAILED:`));

/** Runs 05-distribute and SIGKILLs `victim`'s sshd (PID 1 of the host) as soon as the first host connects. */
function distributeKilling(victim: string): Promise<ScriptResult & { killed: boolean }> {
  return new Promise((resolve) => {
    const args = [join(REPO, 'scripts/05-distribute.mjs'), '--inventory', lab.inventoryPath, '--dir', lab.dir, '--parallel', '1', '--json'];
    const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      // --parallel 1 works through the hosts in inventory order: lb-0 first, the victim after two controllers.
      if (!killed && /^lb-0: connected to/m.test(stderr)) {
        killed = true;
        process.kill(lab.initPid(victim)!, 'SIGKILL');
      }
    });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, killed }));
  });
}

test('01-infra, 02-prep, 03-pki, 04-kubeconfig on six lab hosts', async () => {
  must(await lab.script('01-infra'), '01-infra');
  must(await lab.script('02-prep'), '02-prep');
  must(await lab.script('03-pki'), '03-pki');
  must(await lab.script('04-kubeconfig'), '04-kubeconfig');
  manifest = readManifest(lab.dir)!;
  assert.ok(manifest.entries.length > 40);
});

test('05-distribute with one host\'s sshd killed during the run: the others complete, exit 1', async () => {
  const r = await distributeKilling(VICTIM);
  assert.ok(r.killed, 'the victim was killed during the run');
  assert.is(r.code, 1, r.stderr);
  const hosts = (JSON.parse(r.stdout) as { hosts: { host: string; ok: boolean; error?: string; counts: { changed: number; failed: number } }[] }).hosts;
  for (const h of hosts) {
    if (h.host === VICTIM) {
      assert.not.ok(h.ok);
      assert.match(h.error!, /cannot connect to .*:22: connection refused/);
    } else {
      assert.ok(h.ok, `${h.host}: ${h.error}`);
      if (h.host !== 'lb-0') assert.ok(h.counts.changed > 0, h.host);
    }
  }
  assert.match(summary(r.stderr, VICTIM)!, /FAILED: cannot connect/);
  assert.match(r.stderr, new RegExp(`1 of 6 host\\(s\\) failed: ${VICTIM}\\. The others are complete`));
});

test('after 01-infra restarts the host, a re-run completes it and touches no other host', async () => {
  const infra = must(await lab.script('01-infra'), '01-infra');
  assert.match(infra.stderr, new RegExp(`${VICTIM}: restarted with its disk intact`));
  const r = must(await lab.script('05-distribute'), '05-distribute re-run');
  const changed = r.stderr.split('\n').filter((l) => / changed \(/.test(l));
  assert.ok(changed.length > 20, changed.join('\n'));
  assert.ok(changed.every((l) => l.startsWith(`${VICTIM}: `)), changed.join('\n'));
  for (const h of ['controller-0', 'controller-1', 'worker-0', 'worker-1']) assert.match(summary(r.stderr, h)!, /^[\w-]+: ok: \d+ already/);
  assert.match(r.stderr, /all 6 hosts hold exactly what their role needs/);
});

/** etcdctl on this machine, as kube-apiserver: the workspace's etcd-ca and apiserver-etcd-client. */
function etcdctl(args: string[], endpoints = CONTROLLERS.map((c) => `https://${ip(c)}:2379`)) {
  const pki = join(lab.dir, 'pki');
  return exec('etcdctl', [
    '--endpoints', endpoints.join(','), '--dial-timeout', '3s', '--command-timeout', '5s',
    '--cacert', join(pki, 'etcd-ca/cert.pem'),
    '--cert', join(pki, 'apiserver-etcd-client/cert.pem'), '--key', join(pki, 'apiserver-etcd-client/key.pem'),
    ...args,
  ], { env: { PATH: process.env.PATH, ETCDCTL_API: '3' }, okCodes: [1] });
}

test('a three-member etcd cluster runs on the controllers from the distributed /etc/etcd files, TLS everywhere', async () => {
  const cluster = CONTROLLERS.map((c) => `${c}=https://${ip(c)}:2380`).join(',');
  for (const c of CONTROLLERS) {
    const a = ip(c);
    const flags = [
      `--name ${c}`, '--data-dir /var/lib/etcd',
      '--cert-file=/etc/etcd/server.pem', '--key-file=/etc/etcd/server-key.pem',
      '--peer-cert-file=/etc/etcd/peer.pem', '--peer-key-file=/etc/etcd/peer-key.pem',
      '--trusted-ca-file=/etc/etcd/ca.pem', '--peer-trusted-ca-file=/etc/etcd/ca.pem',
      '--client-cert-auth', '--peer-client-cert-auth',
      `--initial-advertise-peer-urls https://${a}:2380`, `--listen-peer-urls https://${a}:2380`,
      `--listen-client-urls https://${a}:2379,https://127.0.0.1:2379`, `--advertise-client-urls https://${a}:2379`,
      `--initial-cluster ${cluster}`, '--initial-cluster-state new', '--initial-cluster-token hardway-e2e',
    ];
    // Inside the host (its mount, network and PID namespaces): it reads the host's /etc/etcd.
    await lab.inHost(c, `setsid etcd ${flags.join(' ')} > /var/log/etcd.log 2>&1 < /dev/null &`);
  }
  for (const c of CONTROLLERS) {
    const pids = (await exec('ip', ['netns', 'pids', netnsName(lab.cluster, c)])).stdout.split(/\s+/).filter(Boolean).map(Number);
    const etcd = pids.filter((p) => procCmdline(p)[0]?.endsWith('etcd'));
    assert.is(etcd.length, 1, `${c}: one etcd`);
    etcdPids.push(...etcd);
  }
  let list = '';
  for (let i = 0; i < 80; i++) {
    const r = await etcdctl(['member', 'list', '-w', 'json']);
    if (r.code === 0) {
      list = r.stdout;
      const members = (JSON.parse(list) as { members?: { name?: string; clientURLs?: string[] }[] }).members ?? [];
      if (members.length === 3 && members.every((m) => m.name && m.clientURLs?.length)) break;
    }
    await sleep(250);
  }
  const table = (await etcdctl(['member', 'list'])).stdout;
  const started = table.trim().split('\n').filter((l) => /, started, /.test(l));
  assert.is(started.length, 3, `member list:\n${table}\n${await lab.inHost('controller-0', 'tail -20 /var/log/etcd.log')}`);
  for (const c of CONTROLLERS) assert.match(table, new RegExp(`, started, ${c}, https://${ip(c).replace(/\./g, '\\.')}:2380, https://${ip(c).replace(/\./g, '\\.')}:2379`));

  const value = `written-through-${ip('controller-0')}-${Date.now()}`;
  const put = await etcdctl(['put', '/hardway/e2e', value], [`https://${ip('controller-0')}:2379`]);
  assert.is(put.stdout.trim(), 'OK', put.stderr);
  const get = await etcdctl(['get', '/hardway/e2e', '--print-value-only', '--consistency=l'], [`https://${ip('controller-2')}:2379`]);
  assert.is(get.stdout.trim(), value, 'read back through another member');
  // Client-certificate auth is on: no certificate, no entry.
  const pki = join(lab.dir, 'pki');
  const anonymous = await exec('etcdctl', ['--endpoints', `https://${ip('controller-1')}:2379`, '--dial-timeout', '2s', '--command-timeout', '3s',
    '--cacert', join(pki, 'etcd-ca/cert.pem'), 'get', '/hardway/e2e'], { env: { PATH: process.env.PATH, ETCDCTL_API: '3' }, okCodes: [1] });
  assert.is(anonymous.code, 1, 'refused without a client certificate');
  // The peers authenticate each other with the distributed peer pairs, against etcd-ca.
  assert.match(await lab.inHost('controller-1', 'cat /var/log/etcd.log'),
    /peerTLS: cert = \/etc\/etcd\/peer\.pem, key = \/etc\/etcd\/peer-key\.pem, trusted-ca = \/etc\/etcd\/ca\.pem, client-cert-auth = true/);
});

/** sha256 of every regular file a lab host wrote onto its own disk (its overlay upper directories). */
function diskHashes(host: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p, `${rel}/${name}`);
      else if (st.isFile()) out.set(`${rel}/${name}`, sha256(readFileSync(p)));
    }
  };
  walk(join(LAB_ROOT, lab.cluster, host, 'upper'), '');
  return out;
}

test('no host\'s disk holds a private key or secret the map does not give it; a worker has no CA key', () => {
  const secrets = manifest.entries.filter((e) => e.secret);
  for (const h of lab.hosts) {
    const disk = diskHashes(h.name);
    const present = new Set(disk.values());
    const mine = new Set(secrets.filter((e) => e.destinations.some((d) => d.host === h.name)).map((e) => e.sha256));
    const foreign = secrets.filter((e) => present.has(e.sha256) && !mine.has(e.sha256)).map((e) => e.id);
    assert.equal(foreign, [], `${h.name} holds ${foreign.join(', ')}`);
    if (h.role === 'worker') {
      for (const ca of ['kubernetes-ca/key', 'etcd-ca/key', 'front-proxy-ca/key']) assert.not.ok(present.has(manifest.entries.find((e) => e.id === ca)!.sha256), `${h.name} has ${ca}`);
      const keyFiles = [...disk.keys()].filter((p) => !p.startsWith('/etc/ssh/ssh_host_') && readFileSync(join(LAB_ROOT, lab.cluster, h.name, 'upper', p), 'latin1').includes('PRIVATE KEY'));
      assert.equal(keyFiles, ['/var/lib/kubelet/kubelet-key.pem'], h.name);
    }
    if (h.role === 'loadbalancer') assert.is(mine.size, 0);
  }
});

test('the pipeline `npm start` runs (01 -> 05) finds everything done and changes nothing', async () => {
  const r = must(await lab.script('pipeline'), 'pipeline');
  for (const step of ['01-infra', '02-prep', '03-pki', '04-kubeconfig', '05-distribute']) assert.match(r.stderr, new RegExp(`== ${step}: `));
  const fifth = r.stderr.slice(r.stderr.indexOf('== 05-distribute'));
  assert.equal(fifth.split('\n').filter((l) => / changed \(/.test(l)), []);
  assert.match(fifth, /\(0 changed, \d+ already\)/);
  assert.match(r.stderr, /pipeline: done\./);
});

test('a host whose SSH host key changed is refused; the others carry on', async () => {
  await lab.inHost('worker-0', 'rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key');
  const r = await lab.script('05-distribute', ['--accept-new-host-keys']);
  assert.is(r.code, 1, r.stderr);
  assert.match(summary(r.stderr, 'worker-0')!, /FAILED: HOST KEY CHANGED for .*: it offered ssh-ed25519 SHA256:/);
  for (const h of lab.hosts.filter((x) => x.name !== 'worker-0')) assert.match(summary(r.stderr, h.name)!, /: ok: /);
});

test('destroying the lab ends etcd with the hosts', async () => {
  assert.is(etcdPids.length, 3);
  assert.ok(etcdPids.every(procAlive));
  const r = must(await lab.script('01-infra', ['--destroy']), '01-infra --destroy');
  assert.match(r.stderr, /destroyed: no links, namespaces, processes or mounts/);
  for (let i = 0; i < 40 && etcdPids.some(procAlive); i++) await sleep(50);
  assert.equal(etcdPids.filter(procAlive), []);
  assert.not.ok(existsSync(join(LAB_ROOT, lab.cluster)));
});

test.run();
