// 05-distribute against a real lab (lb-0, controller-0, worker-0) with the real 03-pki and
// 04-kubeconfig: dry run changes nothing; a first run installs every file with its mode and owner
// root, one connection per host; a re-run changes nothing; a tampered workspace is refused before
// any connection; drift on a host is repaired and only it; a stray private key fails its host
// by name and stays where it is; an interrupted run's temp files are cleaned up; the verification
// on the host is real (a certificate from the wrong CA fails it).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestLab, type TestLab, type ScriptResult } from './helpers/lab.ts';
import { readManifest, type Manifest } from '../lib/manifest.ts';
import { sha256 } from '../lib/fsutil.ts';

interface HostJson {
  host: string;
  ok: boolean;
  error?: string;
  counts: { changed: number; already: number; wouldChange: number; failed: number };
  files?: { path: string; status: string; reason?: string }[];
  strayKeys?: string[];
  leftovers?: string[];
  verified?: { certificates: number; pairs: number };
}

let lab: TestLab;
let manifest: Manifest;

const distribute = (args: string[] = []) => lab.script('05-distribute', ['--json', ...args]);
const hostsOf = (r: ScriptResult): Record<string, HostJson> => Object.fromEntries((JSON.parse(r.stdout) as { hosts: HostJson[] }).hosts.map((h) => [h.host, h]));
const changedLines = (stderr: string) => stderr.split('\n').filter((l) => / changed \(/.test(l));
/** `sha mode uid:gid` of each path on the host, or `missing`. */
async function remoteState(host: string, paths: string[]): Promise<Record<string, string>> {
  const out = await lab.inHost(host, paths.map((p) => `if [ -f ${p} ]; then echo "${p} $(sha256sum < ${p} | cut -c1-64) $(stat -c '%a %u:%g' ${p})"; else echo "${p} missing"; fi`).join('\n'));
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.split(' ')[0]!, l.split(' ').slice(1).join(' ')]));
}
const destinationsOf = (host: string) => manifest.entries.flatMap((e) => e.destinations.filter((d) => d.host === host).map((d) => ({ ...d, sha256: e.sha256, id: e.id })));

test.before(async () => {
  lab = await createTestLab('dist');
  for (const step of ['01-infra', '03-pki', '04-kubeconfig']) {
    const r = await lab.script(step);
    if (r.code !== 0) throw new Error(`${step} failed: ${r.stderr}`);
  }
  manifest = readManifest(lab.dir)!;
});

test.after(async () => {
  await lab?.cleanup();
});

test('--dry-run lists what would change and changes nothing', async () => {
  const r = await distribute(['--dry-run']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /controller-0: \/var\/lib\/kubernetes\/ca-key\.pem would change \(new file; 0600, sha256 [0-9a-f]{12}\)/);
  assert.match(r.stderr, /worker-0: directory \/var\/lib\/kubelet would change \(created, mode 0700\)/);
  assert.equal(changedLines(r.stderr), []);
  const h = hostsOf(r);
  assert.is(h['controller-0']!.counts.wouldChange, destinationsOf('controller-0').length + 2);
  assert.is(h['worker-0']!.counts.wouldChange, destinationsOf('worker-0').length + 3);
  assert.is(h['lb-0']!.counts.wouldChange, 0);
  assert.is((await lab.inHost('controller-0', 'ls -d /var/lib/kubernetes /etc/etcd 2>&1 || true')).match(/No such file/g)?.length, 2);
});

test('first run: every file of the map in place with its SHA-256, mode and owner root; one connection per host', async () => {
  const r = await distribute();
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stderr.split('\n').filter((l) => l.includes(': connected to')).length, 3, 'one connection per host');
  const h = hostsOf(r);
  for (const name of ['controller-0', 'worker-0']) {
    const dests = destinationsOf(name);
    const state = await remoteState(name, dests.map((d) => d.path));
    for (const d of dests) assert.is(state[d.path], `${d.sha256} ${d.mode.slice(1)} 0:0`, `${name} ${d.path} (${d.id})`);
    assert.is(h[name]!.counts.failed, 0);
    assert.ok(h[name]!.verified!.certificates > 0 && h[name]!.verified!.pairs > 0);
  }
  assert.equal(h['worker-0']!.verified, { certificates: 2, pairs: 1 });
  assert.equal(h['controller-0']!.verified, { certificates: 10, pairs: 8 });
  assert.match(r.stderr, /controller-0: verified on the host: 10 certificate\(s\) against the installed CAs \(openssl verify\), 8 private key\(s\) match their certificate, no stray private keys/);
  assert.match(r.stderr, /lb-0: receives nothing; no stray private keys under the managed directories/);
  // Directories: 0700 where a key lives, 0755 otherwise; nothing created that the role does not use.
  assert.is(await lab.inHost('controller-0', "stat -c '%n %a %U' /var/lib/kubernetes /etc/etcd; ls -d /var/lib/kubelet 2>/dev/null || true"), '/var/lib/kubernetes 700 root\n/etc/etcd 700 root\n');
  assert.is(await lab.inHost('worker-0', "stat -c '%n %a %U' /var/lib/kubernetes /var/lib/kubelet /var/lib/kube-proxy; ls -d /etc/etcd 2>/dev/null || true"),
    '/var/lib/kubernetes 755 root\n/var/lib/kubelet 700 root\n/var/lib/kube-proxy 700 root\n');
  // No temp file anywhere.
  assert.is(await lab.inHost('controller-0', "find /var/lib/kubernetes /etc/etcd /tmp -name '*hardway*'"), '');
  // The least-privilege rule, on the host: a worker holds no CA key and no key but its own.
  assert.is(await lab.inHost('worker-0', "grep -rl 'PRIVATE KEY' /var/lib/kubernetes /var/lib/kubelet /var/lib/kube-proxy || true"), '/var/lib/kubelet/kubelet-key.pem\n');
  assert.is(await lab.inHost('lb-0', 'ls -d /var/lib/kubernetes /etc/etcd /var/lib/kubelet /var/lib/kube-proxy 2>/dev/null || true'), '');
});

test('a second run finds everything already in place and changes nothing', async () => {
  const r = await distribute();
  assert.is(r.code, 0, r.stderr);
  assert.equal(changedLines(r.stderr), []);
  const h = hostsOf(r);
  assert.is(h['controller-0']!.counts.changed, 0);
  assert.is(h['controller-0']!.counts.already, destinationsOf('controller-0').length + 2);
  assert.match(r.stderr, new RegExp(`controller-0: ${destinationsOf('controller-0').length} file\\(s\\) already in place`));
  assert.match(r.stderr, /^worker-0: ok: 8 already/m);
});

test('a tampered workspace is refused (exit 2) before any host is contacted', async () => {
  const key = join(lab.dir, 'pki/kubelet-worker-0/key.pem');
  const saved = readFileSync(key);
  writeFileSync(key, Buffer.concat([saved, Buffer.from('\n')]));
  try {
    const before = await remoteState('worker-0', ['/var/lib/kubelet/kubelet-key.pem']);
    const r = await lab.script('05-distribute');
    assert.is(r.code, 2, r.stderr);
    assert.match(r.stderr, /the workspace does not match its manifest, so nothing was sent: pki\/kubelet-worker-0\/key\.pem has SHA-256 [0-9a-f]{64}, the manifest records [0-9a-f]{64}/);
    assert.not.match(r.stderr, /connected to/);
    assert.equal(await remoteState('worker-0', ['/var/lib/kubelet/kubelet-key.pem']), before);
  } finally {
    writeFileSync(key, saved, { mode: 0o600 });
  }
});

test('drift on a host: content, mode and owner are repaired, and nothing else is touched', async () => {
  await lab.inHost('controller-0', [
    'echo tampered >> /var/lib/kubernetes/kube-apiserver.pem',
    'chmod 644 /etc/etcd/server-key.pem',
    'chown 1000:1000 /var/lib/kubernetes/sa.pub',
    'chmod 755 /etc/etcd',
    'rm /var/lib/kubernetes/encryption-config.yaml',
  ].join('; '));
  const r = await distribute();
  assert.is(r.code, 0, r.stderr);
  assert.equal(changedLines(r.stderr).sort(), [
    'controller-0: /etc/etcd/server-key.pem changed (mode 644 -> 600)',
    'controller-0: /var/lib/kubernetes/encryption-config.yaml changed (new file; 0600, sha256 ' + manifest.entries.find((e) => e.id === 'encryption-config')!.sha256.slice(0, 12) + ')',
    'controller-0: /var/lib/kubernetes/kube-apiserver.pem changed (content differs; 0644, sha256 ' + manifest.entries.find((e) => e.id === 'kube-apiserver/cert')!.sha256.slice(0, 12) + ')',
    'controller-0: /var/lib/kubernetes/sa.pub changed (owner 1000:1000 -> 0:0)',
    'controller-0: directory /etc/etcd changed (mode 755 -> 700)',
  ]);
  const dests = destinationsOf('controller-0');
  const state = await remoteState('controller-0', dests.map((d) => d.path));
  for (const d of dests) assert.is(state[d.path], `${d.sha256} ${d.mode.slice(1)} 0:0`, d.path);
});

test('a stray private key fails its host by name and is left in place; an interrupted run\'s temp files are removed', async () => {
  await lab.inHost('worker-0', `cat > /var/lib/kubelet/etcd-ca-key.pem <<'EOF'\n${readFileSync(join(lab.dir, 'pki/etcd-ca/key.pem'), 'utf8')}EOF`);
  await lab.inHost('lb-0', "mkdir -p /var/lib/kubernetes && printf -- '-----BEGIN PRIVATE KEY-----\\nx\\n' > /var/lib/kubernetes/notes.txt");
  // What a run killed between writing its temp files and renaming them leaves behind.
  await lab.inHost('controller-0', 'head -c 100 /var/lib/kubernetes/ca-key.pem > /var/lib/kubernetes/.ca-key.pem.hardway-0badf00d; touch /etc/etcd/.peer-key.pem.hardway-0badf00d.b64');
  const r = await distribute();
  assert.is(r.code, 1, r.stderr);
  const h = hostsOf(r);
  assert.equal(h['worker-0']!.strayKeys, ['/var/lib/kubelet/etcd-ca-key.pem']);
  assert.equal(h['lb-0']!.strayKeys, ['/var/lib/kubernetes/notes.txt']);
  assert.match(r.stderr, /error: worker-0: \/var\/lib\/kubelet\/etcd-ca-key\.pem failed: a private key that the distribution map does not put on worker-0 \(a worker\); left in place/);
  assert.match(r.stderr, /^worker-0: FAILED: \/var\/lib\/kubelet\/etcd-ca-key\.pem: a private key/m);
  assert.match(r.stderr, /^lb-0: FAILED: \/var\/lib\/kubernetes\/notes\.txt: a private key/m);
  // The controller is fine: the half-written key copy is not mistaken for a stray key, it is cleaned up.
  assert.ok(h['controller-0']!.ok, h['controller-0']!.error);
  assert.equal(h['controller-0']!.leftovers, ['/etc/etcd/.peer-key.pem.hardway-0badf00d.b64', '/var/lib/kubernetes/.ca-key.pem.hardway-0badf00d']);
  assert.is(await lab.inHost('controller-0', "find /var/lib/kubernetes /etc/etcd -name '*hardway*'"), '');
  assert.match(r.stderr, /2 of 3 host\(s\) failed: lb-0, worker-0/);
  // Nothing was deleted silently.
  assert.match(await lab.inHost('worker-0', 'head -1 /var/lib/kubelet/etcd-ca-key.pem'), /PRIVATE KEY/);

  await lab.inHost('worker-0', 'rm /var/lib/kubelet/etcd-ca-key.pem');
  await lab.inHost('lb-0', 'rm -r /var/lib/kubernetes');
  const again = await distribute();
  assert.is(again.code, 0, again.stderr);
});

test('the verification on the host is real: a certificate from the wrong CA and a key that does not match fail it', async () => {
  // A consistent but wrong workspace: worker-0's kubelet certificate replaced by an etcd one,
  // with the manifest's checksum updated, so only the host-side openssl can notice.
  const manifestPath = join(lab.dir, 'manifest.json');
  const savedManifest = readFileSync(manifestPath);
  const certPath = join(lab.dir, 'pki/kubelet-worker-0/cert.pem');
  const savedCert = readFileSync(certPath);
  try {
    const wrong = readFileSync(join(lab.dir, 'pki/etcd-peer-controller-0/cert.pem'));
    writeFileSync(certPath, wrong);
    const m = JSON.parse(savedManifest.toString()) as Manifest;
    m.entries.find((e) => e.id === 'kubelet-worker-0/cert')!.sha256 = sha256(wrong);
    writeFileSync(manifestPath, JSON.stringify(m, null, 2));
    const r = await distribute();
    assert.is(r.code, 1, r.stderr);
    const w = hostsOf(r)['worker-0']!;
    assert.not.ok(w.ok);
    assert.match(r.stderr, /worker-0: verify failed: \/var\/lib\/kubelet\/kubelet\.pem: openssl verify against \/var\/lib\/kubernetes\/ca\.pem failed: .*unable to get local issuer certificate/);
    assert.match(r.stderr, /worker-0: verify failed: \/var\/lib\/kubelet\/kubelet-key\.pem and \/var\/lib\/kubelet\/kubelet\.pem: the private key does not belong to it/);
    assert.ok(hostsOf(r)['controller-0']!.ok);
  } finally {
    writeFileSync(certPath, savedCert);
    writeFileSync(manifestPath, savedManifest);
  }
  const fixed = await distribute();
  assert.is(fixed.code, 0, fixed.stderr);
  assert.match(fixed.stderr, /worker-0: \/var\/lib\/kubelet\/kubelet\.pem changed \(content differs/);
});

test('a missing manifest is bad input', async () => {
  const r = await lab.script('05-distribute', [], { dir: join(lab.root, 'empty-ws') });
  assert.is(r.code, 2, r.stderr);
  assert.match(r.stderr, /manifest\.json: not found: run 03-pki and 04-kubeconfig first/);
});

test.run();
