// 05-distribute, the pure parts: the plan against MISSION.md §3 (what each role receives, modes,
// which CA verifies what, which key matches what), the refusals of a map that breaks the rules,
// the survey parser and the decisions as tables, and the install script run for real on a temp
// directory of this machine (a damaged upload changes nothing and leaves no temp file).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, statSync, readdirSync, existsSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseInventory, type Inventory } from '../lib/inventory.ts';
import { planPki, type CertRow } from '../lib/pki/plan.ts';
import { planKubeconfigs, encryptionDestinations } from '../lib/kubeconfig/plan.ts';
import { sha256 } from '../lib/fsutil.ts';
import type { Manifest, ManifestEntry, EntryKind, Destination } from '../lib/manifest.ts';
import { planDistribution, PlanError, MANAGED_DIRS, type HostPlan, type PlannedFile } from '../lib/distribute/plan.ts';
import { parseSurvey, decide, installScript, bundle, hasWork, parseVerify, tempPath, surveyScript, verifyScript, type Decision } from '../lib/distribute/remote.ts';

const shippedJson = JSON.parse(readFileSync(new URL('../inventory.json', import.meta.url), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const inventory = (edit?: (j: typeof shippedJson) => void): Inventory => {
  const j = structuredClone(shippedJson);
  edit?.(j);
  return parseInventory(j, 'inventory.json');
};
const shipped = inventory();

/** The manifest 03-pki and 04-kubeconfig write for `inv`, from the same plan tables, with made-up checksums. */
function manifestFor(inv: Inventory): Manifest {
  const pki = planPki(inv);
  const entries: ManifestEntry[] = [];
  const add = (id: string, step: string, kind: EntryKind, path: string, destinations: readonly Destination[], secret: boolean, signer?: string) =>
    entries.push({
      id, step, kind, path, sha256: sha256(id), secret, destinations: [...destinations], purpose: id,
      ...(signer ? { certificate: { cn: id.split('/')[0]!, o: [], sans: [], usages: [], signer, fingerprint: '', notBefore: '', notAfter: '', serial: '', isCa: kind === 'ca-cert', keyAlgorithm: 'rsa-2048' } } : {}),
    });
  const row = (r: CertRow, ca: boolean) => {
    add(`${r.id}/cert`, '03-pki', ca ? 'ca-cert' : 'cert', `pki/${r.id}/cert.pem`, r.certTo, false, r.signer);
    add(`${r.id}/key`, '03-pki', ca ? 'ca-key' : 'key', `pki/${r.id}/key.pem`, r.keyTo, true);
  };
  pki.cas.forEach((r) => row(r, true));
  pki.leaves.forEach((r) => row(r, false));
  add('service-account/key', '03-pki', 'sa-key', 'pki/service-account/sa.key', pki.serviceAccount.keyTo, true);
  add('service-account/pub', '03-pki', 'sa-pub', 'pki/service-account/sa.pub', pki.serviceAccount.pubTo, false);
  for (const k of planKubeconfigs(inv)) add(`kubeconfig/${k.name}`, '04-kubeconfig', 'kubeconfig', k.path, k.destinations, true);
  add('encryption-config', '04-kubeconfig', 'encryption-config', 'encryption/encryption-config.yaml', encryptionDestinations(inv), true);
  return { version: 1, cluster: inv.cluster.name, entries };
}

const K = '/var/lib/kubernetes';
const hostPlan = (name: string, inv = shipped, m = manifestFor(inv)) => planDistribution(m, inv).hosts.find((h) => h.host.name === name)!;
const paths = (p: HostPlan) => p.files.map((f) => `${f.mode} ${f.path}`).sort();

// ------------------------------------------------------------------------------------------
// the plan: MISSION.md §3

test('a controller gets its role\'s files, each once, keys 0600 and certificates 0644', () => {
  const p = hostPlan('controller-1');
  assert.equal(paths(p), [
    '0600 /etc/etcd/peer-key.pem', '0600 /etc/etcd/server-key.pem',
    `0600 ${K}/admin.kubeconfig`, `0600 ${K}/apiserver-etcd-client-key.pem`, `0600 ${K}/apiserver-kubelet-client-key.pem`,
    `0600 ${K}/ca-key.pem`, `0600 ${K}/encryption-config.yaml`, `0600 ${K}/front-proxy-client-key.pem`,
    `0600 ${K}/kube-apiserver-key.pem`, `0600 ${K}/kube-controller-manager.kubeconfig`, `0600 ${K}/kube-scheduler.kubeconfig`, `0600 ${K}/sa.key`,
    '0644 /etc/etcd/ca.pem', '0644 /etc/etcd/peer.pem', '0644 /etc/etcd/server.pem',
    `0644 ${K}/apiserver-etcd-client.pem`, `0644 ${K}/apiserver-kubelet-client.pem`, `0644 ${K}/ca.pem`, `0644 ${K}/etcd-ca.pem`,
    `0644 ${K}/front-proxy-ca.pem`, `0644 ${K}/front-proxy-client.pem`, `0644 ${K}/kube-apiserver.pem`, `0644 ${K}/sa.pub`,
  ]);
  // Its own etcd pair, nobody else's; no etcd-ca or front-proxy-ca key.
  assert.equal(p.files.filter((f) => f.id.startsWith('etcd-')).map((f) => f.id).sort(),
    ['etcd-ca/cert', 'etcd-ca/cert', 'etcd-peer-controller-1/cert', 'etcd-peer-controller-1/key', 'etcd-server-controller-1/cert', 'etcd-server-controller-1/key']);
  assert.not.ok(p.files.some((f) => f.id === 'etcd-ca/key' || f.id === 'front-proxy-ca/key'));
  assert.equal(p.dirs, [{ path: K, mode: '0700' }, { path: '/etc/etcd', mode: '0700' }]);
});

test('a worker gets the kubernetes-ca certificate (no key), its own kubelet pair and kubeconfig, the kube-proxy kubeconfig', () => {
  const p = hostPlan('worker-1');
  assert.equal(p.files.map((f) => `${f.id} ${f.mode} ${f.path}`), [
    'kubeconfig/kube-proxy 0600 /var/lib/kube-proxy/kubeconfig',
    'kubeconfig/kubelet-worker-1 0600 /var/lib/kubelet/kubeconfig',
    'kubelet-worker-1/key 0600 /var/lib/kubelet/kubelet-key.pem',
    'kubelet-worker-1/cert 0644 /var/lib/kubelet/kubelet.pem',
    'kubernetes-ca/cert 0644 /var/lib/kubernetes/ca.pem',
  ]);
  assert.equal(p.dirs, [{ path: K, mode: '0755' }, { path: '/var/lib/kubelet', mode: '0700' }, { path: '/var/lib/kube-proxy', mode: '0700' }]);
  assert.equal(p.pairs, [{ key: '/var/lib/kubelet/kubelet-key.pem', cert: '/var/lib/kubelet/kubelet.pem', certKind: 'x509' }]);
});

test('the load balancer gets nothing, and is still in the plan (it is checked for stray keys)', () => {
  const p = hostPlan('lb-0');
  assert.equal(p.files, []);
  assert.equal(p.dirs, []);
  assert.equal(planDistribution(manifestFor(shipped), shipped).hosts.map((h) => h.host.name), shipped.hosts.map((h) => h.name));
});

test('each certificate is verified against the copy of its CA on the same host, in its own directory when there are two', () => {
  const p = hostPlan('controller-0');
  const v = Object.fromEntries(p.files.filter((f) => f.verifyWith).map((f) => [f.path, f.verifyWith]));
  assert.equal(v, {
    '/etc/etcd/ca.pem': '/etc/etcd/ca.pem',
    '/etc/etcd/peer.pem': '/etc/etcd/ca.pem',
    '/etc/etcd/server.pem': '/etc/etcd/ca.pem',
    [`${K}/apiserver-etcd-client.pem`]: `${K}/etcd-ca.pem`,
    [`${K}/apiserver-kubelet-client.pem`]: `${K}/ca.pem`,
    [`${K}/ca.pem`]: `${K}/ca.pem`,
    [`${K}/etcd-ca.pem`]: `${K}/etcd-ca.pem`,
    [`${K}/front-proxy-ca.pem`]: `${K}/front-proxy-ca.pem`,
    [`${K}/front-proxy-client.pem`]: `${K}/front-proxy-ca.pem`,
    [`${K}/kube-apiserver.pem`]: `${K}/ca.pem`,
  });
  assert.equal(p.pairs.map((x) => `${x.key} ${x.cert} ${x.certKind}`).sort(), [
    `/etc/etcd/peer-key.pem /etc/etcd/peer.pem x509`,
    `/etc/etcd/server-key.pem /etc/etcd/server.pem x509`,
    `${K}/apiserver-etcd-client-key.pem ${K}/apiserver-etcd-client.pem x509`,
    `${K}/apiserver-kubelet-client-key.pem ${K}/apiserver-kubelet-client.pem x509`,
    `${K}/ca-key.pem ${K}/ca.pem x509`,
    `${K}/front-proxy-client-key.pem ${K}/front-proxy-client.pem x509`,
    `${K}/kube-apiserver-key.pem ${K}/kube-apiserver.pem x509`,
    `${K}/sa.key ${K}/sa.pub public-key`,
  ]);
});

test('no host receives another host\'s private key; every file lands in a managed directory', () => {
  const inv = inventory((j) => {
    j.workers.push({ name: 'worker-2', privateIp: '10.240.0.22' });
  });
  const plan = planDistribution(manifestFor(inv), inv);
  for (const h of plan.hosts) {
    for (const f of h.files) {
      assert.ok((MANAGED_DIRS as readonly string[]).includes(f.path.slice(0, f.path.lastIndexOf('/'))), f.path);
      const owner = /^(kubelet|etcd-server|etcd-peer)-(.+)\/key$/.exec(f.id)?.[2];
      if (owner) assert.is(owner, h.host.name, `${h.host.name} got ${f.id}`);
    }
  }
  // Each workspace file is read once, however many hosts receive it.
  assert.is(new Set(plan.sources.map((s) => s.local)).size, plan.sources.length);
});

// ------------------------------------------------------------------------------------------
// refusals

type Edit = (m: Manifest) => void;
const entry = (m: Manifest, id: string) => m.entries.find((e) => e.id === id)!;
const refusals: [string, Edit, RegExp, Inventory?][] = [
  ['etcd-ca key sent somewhere', (m) => entry(m, 'etcd-ca/key').destinations.push({ host: 'controller-0', path: '/etc/etcd/ca-key.pem', mode: '0600' }), /etcd-ca\/key: a CA key other than kubernetes-ca's never leaves the workstation/],
  ['front-proxy-ca key sent somewhere', (m) => entry(m, 'front-proxy-ca/key').destinations.push({ host: 'controller-0', path: `${K}/front-proxy-ca-key.pem`, mode: '0600' }), /front-proxy-ca\/key: a CA key other than/],
  ['kubernetes-ca key to a worker', (m) => entry(m, 'kubernetes-ca/key').destinations.push({ host: 'worker-0', path: `${K}/ca-key.pem`, mode: '0600' }), /kubernetes-ca\/key -> worker-0:\/var\/lib\/kubernetes\/ca-key\.pem: a CA key goes to controllers only/],
  ['a kubelet key to another worker', (m) => (entry(m, 'kubelet-worker-0/key').destinations[0]!.host = 'worker-1'), /worker-0's private key may not go to another host/],
  ['an etcd peer key to another controller', (m) => entry(m, 'etcd-peer-controller-2/key').destinations.push({ host: 'controller-0', path: '/etc/etcd/peer2-key.pem', mode: '0600' }), /controller-2's private key may not go to another host/],
  ['a path outside the managed directories', (m) => (entry(m, 'kube-apiserver/cert').destinations[0]!.path = '/etc/passwd'), /outside the managed directories/],
  ['a path with ..', (m) => (entry(m, 'kube-apiserver/cert').destinations[0]!.path = `${K}/../../../etc/x.pem`), /not a plain absolute path/],
  ['a path with a space', (m) => (entry(m, 'kube-apiserver/cert').destinations[0]!.path = `${K}/a b.pem`), /not a plain absolute path/],
  ['a relative path', (m) => (entry(m, 'kube-apiserver/cert').destinations[0]!.path = 'var/lib/kubernetes/x.pem'), /not a plain absolute path/],
  ['a host the inventory lacks', (m) => (entry(m, 'kube-apiserver/cert').destinations[0]!.host = 'controller-9'), /controller-9 is not in the inventory/],
  ['a key 0644', (m) => (entry(m, 'kube-apiserver/key').destinations[0]!.mode = '0644'), /a secret must be 0600, not 0644/],
  ['a kubeconfig 0644', (m) => (entry(m, 'kubeconfig/kube-proxy').destinations[0]!.mode = '0644'), /a secret must be 0600/],
  ['a strange mode', (m) => ((entry(m, 'kube-apiserver/cert').destinations[0] as { mode: string }).mode = '0666'), /mode "0666" is neither 0600 nor 0644/],
  ['anything for the load balancer', (m) => entry(m, 'kubernetes-ca/cert').destinations.push({ host: 'lb-0', path: `${K}/ca.pem`, mode: '0644' }), /the load balancer receives nothing from the PKI/],
  ['two files for one path', (m) => (entry(m, 'service-account/pub').destinations[0]!.path = `${K}/ca.pem`), /controller-0:\/var\/lib\/kubernetes\/ca\.pem would receive both/],
  ['another cluster\'s manifest', (m) => (m.cluster = 'other'), /the manifest is for cluster "other", the inventory for "hardway"/],
  ['no kubeconfigs yet', (m) => (m.entries = m.entries.filter((e) => e.step !== '04-kubeconfig')), /no kubeconfigs: run 04-kubeconfig first/],
  ['a worker the manifest has never heard of', () => {}, /nothing for worker-2: re-run 03-pki and 04-kubeconfig/, inventory((j) => j.workers.push({ name: 'worker-2', privateIp: '10.240.0.22' }))],
  ['a certificate without its CA on the host', (m) => (entry(m, 'kubernetes-ca/cert').destinations = entry(m, 'kubernetes-ca/cert').destinations.filter((d) => d.host !== 'worker-0')), /worker-0:\/var\/lib\/kubelet\/kubelet\.pem: worker-0 receives kubelet-worker-0\/cert but not its CA kubernetes-ca\/cert/],
];

for (const [name, edit, want, inv] of refusals) {
  test(`refused: ${name}`, () => {
    const m = manifestFor(shipped);
    edit(m);
    try {
      planDistribution(m, inv ?? shipped);
      assert.unreachable('should refuse');
    } catch (e) {
      assert.instance(e, PlanError);
      assert.match((e as Error).message, want);
    }
  });
}

// ------------------------------------------------------------------------------------------
// survey and decisions

const worker = hostPlan('worker-0');
const fileOf = (p: HostPlan, path: string) => p.files.find((f) => f.path === path)!;
const surveyText = (lines: string[]) => `${lines.join('\n')}\nE end\n`;

test('survey: states, checksums, modes, directories, leftovers and key-like files; a cut-off answer is an error', () => {
  const ca = fileOf(worker, `${K}/ca.pem`);
  const s = parseSurvey(surveyText([
    'F missing /var/lib/kubelet/kubelet.pem',
    'F link /var/lib/kubelet/kubeconfig',
    `H ${ca.sha256}  ${K}/ca.pem`,
    `S 644 0 0 ${K}/ca.pem`,
    'D 755 0 0 /var/lib/kubernetes',
    'D missing /etc/etcd',
    'D other /var/lib/kube-proxy',
    'T /var/lib/kubelet/.kubelet-key.pem.hardway-1a2b3c4d',
    'K /var/lib/kubelet/old-key.pem',
    'K /var/lib/kubelet/old-key.pem',
    'K /var/lib/kubelet/kubelet-key.pem',
  ]));
  assert.equal(s.files.get(`${K}/ca.pem`), { state: 'file', sha256: ca.sha256, mode: '644', owner: '0:0' });
  assert.equal(s.files.get('/var/lib/kubelet/kubelet.pem'), { state: 'missing' });
  assert.equal(s.files.get('/var/lib/kubelet/kubeconfig'), { state: 'link' });
  assert.equal(s.dirs.get(K), { state: 'dir', mode: '755', owner: '0:0' });
  assert.equal(s.dirs.get('/etc/etcd'), { state: 'missing' });
  assert.equal(s.dirs.get('/var/lib/kube-proxy'), { state: 'other' });
  assert.equal(s.leftovers, ['/var/lib/kubelet/.kubelet-key.pem.hardway-1a2b3c4d']);
  assert.equal(s.keyFiles, ['/var/lib/kubelet/kubelet-key.pem', '/var/lib/kubelet/old-key.pem']);
  assert.throws(() => parseSurvey('F missing /x\n'), /cut off/);
});

test('decide: upload what is missing or differs, fix mode and owner in place, keep the rest; stray keys are the key files not in the map', () => {
  const by = (p: string) => fileOf(worker, p);
  const lines = [
    // ca.pem: right. kubelet.pem: wrong content. kubelet-key.pem: right content, 0644.
    `H ${by(`${K}/ca.pem`).sha256}  ${K}/ca.pem`, `S 644 0 0 ${K}/ca.pem`,
    `H ${'0'.repeat(64)}  /var/lib/kubelet/kubelet.pem`, 'S 644 0 0 /var/lib/kubelet/kubelet.pem',
    `H ${by('/var/lib/kubelet/kubelet-key.pem').sha256}  /var/lib/kubelet/kubelet-key.pem`, 'S 644 0 0 /var/lib/kubelet/kubelet-key.pem',
    // kubeconfig: right content, owned by 1000. kube-proxy kubeconfig: missing.
    `H ${by('/var/lib/kubelet/kubeconfig').sha256}  /var/lib/kubelet/kubeconfig`, 'S 600 1000 1000 /var/lib/kubelet/kubeconfig',
    'F missing /var/lib/kube-proxy/kubeconfig',
    'D 755 0 0 /var/lib/kubernetes', 'D 755 0 0 /var/lib/kubelet', 'D missing /var/lib/kube-proxy', 'D missing /etc/etcd',
    'K /var/lib/kubelet/kubelet-key.pem', 'K /var/lib/kubernetes/ca-key.pem',
  ];
  const d = decide(worker, parseSurvey(surveyText(lines)));
  const act = Object.fromEntries(d.files.map((a) => [a.file.path, `${a.action}${'reason' in a ? `: ${a.reason}` : ''}`]));
  assert.equal(act, {
    '/var/lib/kube-proxy/kubeconfig': 'upload: new file',
    '/var/lib/kubelet/kubeconfig': 'fix: owner 1000:1000 -> 0:0',
    '/var/lib/kubelet/kubelet-key.pem': 'fix: mode 644 -> 600',
    '/var/lib/kubelet/kubelet.pem': 'upload: content differs',
    [`${K}/ca.pem`]: 'already',
  });
  assert.equal(d.dirs.map((a) => `${a.dir.path} ${a.action}${'reason' in a ? `: ${a.reason}` : ''}`), [
    `${K} already`, '/var/lib/kubelet fix: mode 755 -> 700', '/var/lib/kube-proxy create: created, mode 0700',
  ]);
  assert.equal(d.strayKeys, [`${K}/ca-key.pem`]);
  assert.ok(hasWork(d));

  // Everything right: nothing to do, and no install command at all.
  const right = worker.files.flatMap((f) => [`H ${f.sha256}  ${f.path}`, `S ${f.mode.slice(1)} 0 0 ${f.path}`]);
  const dirs = worker.dirs.map((x) => `D ${x.mode.slice(1)} 0 0 ${x.path}`);
  const none = decide(worker, parseSurvey(surveyText([...right, ...dirs])));
  assert.ok(none.files.every((a) => a.action === 'already'));
  assert.not.ok(hasWork(none));
  // A leftover temp file alone is work (it is removed).
  assert.ok(hasWork(decide(worker, parseSurvey(surveyText([...right, ...dirs, 'T /var/lib/kubelet/.x.hardway-00000000'])))));
});

test('decide: something that is not a file or a directory where one belongs blocks those files only', () => {
  const d = decide(worker, parseSurvey(surveyText(['F other /var/lib/kubelet/kubelet.pem', 'D other /var/lib/kube-proxy', 'D 755 0 0 /var/lib/kubelet', `D 755 0 0 ${K}`])));
  const blocked = d.files.filter((a) => a.action === 'blocked').map((a) => a.file.path).sort();
  assert.equal(blocked, ['/var/lib/kube-proxy/kubeconfig', '/var/lib/kubelet/kubelet.pem']);
  assert.equal(d.dirs.filter((a) => a.action === 'blocked').map((a) => a.dir.path), ['/var/lib/kube-proxy']);
});

test('verify answers: every file as planned, every certificate and pair OK, or each problem named', () => {
  const files = worker.files.flatMap((f) => [`H ${f.sha256}  ${f.path}`, `S ${f.mode.slice(1)} 0 0 ${f.path}`]);
  const good = [...files, 'V ok /var/lib/kubelet/kubelet.pem', `V ok ${K}/ca.pem`, 'P ok /var/lib/kubelet/kubelet-key.pem /var/lib/kubelet/kubelet.pem', 'E end'].join('\n');
  assert.equal(parseVerify(good, worker), { problems: [], certificates: 2, pairs: 1 });
  const bad = [
    ...files.filter((l) => !l.includes('kube-proxy')), 'F missing /var/lib/kube-proxy/kubeconfig',
    'V fail /var/lib/kubelet/kubelet.pem CN = controller-0 error 20 at 0 depth lookup: unable to get local issuer certificate',
    'P fail /var/lib/kubelet/kubelet-key.pem /var/lib/kubelet/kubelet.pem the private key does not belong to it',
    'E end',
  ].join('\n');
  const v = parseVerify(bad, worker);
  assert.equal(v.problems, [
    '/var/lib/kube-proxy/kubeconfig: missing after installing',
    `/var/lib/kubelet/kubelet.pem: openssl verify against ${K}/ca.pem failed: CN = controller-0 error 20 at 0 depth lookup: unable to get local issuer certificate`,
    '/var/lib/kubelet/kubelet-key.pem and /var/lib/kubelet/kubelet.pem: the private key does not belong to it',
    `${K}/ca.pem: no verification answer`,
  ]);
});

test('every script is valid POSIX sh (dash, as `sudo sh -c` runs it on Ubuntu), for every role', () => {
  const plan = planDistribution(manifestFor(shipped), shipped);
  for (const hp of plan.hosts) {
    const d = decide(hp, parseSurvey(surveyText(['D missing /var/lib/kubernetes', 'T /etc/etcd/.x.hardway-00000000'])));
    for (const [what, script] of [['survey', surveyScript(hp)], ['install', installScript(hp, d, '0123abcd')], ['verify', verifyScript(hp)]] as const) {
      const r = spawnSync('sh', ['-n', '-c', script]);
      assert.is(r.status, 0, `${hp.host.name} ${what}: ${r.stderr.toString()}`);
    }
  }
});

// ------------------------------------------------------------------------------------------
// the install script, run for real (as root) on a temp directory

function sandbox(): { root: string; plan: HostPlan; data: Map<string, Buffer>; remove: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'hardway-dist-'));
  const mk = (name: string, mode: '0600' | '0644', text: string): PlannedFile => ({
    id: name, kind: mode === '0600' ? 'key' : 'cert', local: name, path: join(root, 'managed', name), mode, sha256: sha256(text), secret: mode === '0600',
  });
  const files = [mk('a-key.pem', '0600', 'secret bytes\n'), mk('a.pem', '0644', 'public bytes\n'), mk('bin', '0644', ''), mk('empty', '0644', '')];
  const bin = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) % 256));
  files[2]!.sha256 = sha256(bin);
  const data = new Map<string, Buffer>([['a-key.pem', Buffer.from('secret bytes\n')], ['a.pem', Buffer.from('public bytes\n')], ['bin', bin], ['empty', Buffer.alloc(0)]]);
  const plan: HostPlan = { host: shipped.controllers[0]!, files, dirs: [{ path: join(root, 'managed'), mode: '0700' }], pairs: [] };
  return { root, plan, data, remove: () => rmSync(root, { recursive: true, force: true }) };
}

const uploadAll = (plan: HostPlan, leftovers: string[] = []): Decision => ({
  files: plan.files.map((file) => ({ file, action: 'upload', reason: 'new file' })),
  dirs: plan.dirs.map((dir) => ({ dir, action: 'create', reason: 'created' })),
  leftovers,
  strayKeys: [],
});

test('install script: files land with their mode and owner root, binary-safe (and empty), temp files and leftovers gone', () => {
  const sb = sandbox();
  try {
    const managed = join(sb.root, 'managed');
    mkdirSync(managed);
    const leftover = join(managed, '.a-key.pem.hardway-deadbeef');
    writeFileSync(leftover, 'half a key');
    const d = uploadAll(sb.plan, [leftover]);
    const script = installScript(sb.plan, d, 'abcd1234');
    const input = bundle(d, (f) => sb.data.get(f.local)!, 'abcd1234');
    assert.not.match(script, /secret bytes|c2VjcmV0IGJ5dGVz/, 'the script carries no file content');
    assert.match(input.toString(), /^@@ .*\.a-key\.pem\.hardway-abcd1234\.b64\nc2VjcmV0IGJ5dGVzCg==\n/);
    const r = spawnSync('sh', ['-c', script], { input });
    assert.is(r.status, 0, r.stderr.toString());
    for (const f of sb.plan.files) {
      assert.is(sha256(readFileSync(f.path)), f.sha256, f.path);
      const st = statSync(f.path);
      assert.is((st.mode & 0o777).toString(8), f.mode.slice(1), f.path);
      assert.is(`${st.uid}:${st.gid}`, '0:0');
    }
    assert.is((statSync(managed).mode & 0o777).toString(8), '700');
    assert.equal(readdirSync(managed).sort(), ['a-key.pem', 'a.pem', 'bin', 'empty']);
  } finally {
    sb.remove();
  }
});

test('install script: a damaged upload replaces nothing and leaves no temp file', () => {
  const sb = sandbox();
  try {
    const managed = join(sb.root, 'managed');
    mkdirSync(managed, { mode: 0o700 });
    writeFileSync(join(managed, 'a.pem'), 'old public\n');
    const d = uploadAll(sb.plan);
    const script = installScript(sb.plan, d, 'feedf00d');
    // One byte of the key changes on the way.
    const input = bundle(d, (f) => (f.local === 'a-key.pem' ? Buffer.from('secret bytez\n') : sb.data.get(f.local)!), 'feedf00d');
    const r = spawnSync('sh', ['-c', script], { input });
    assert.is(r.status, 90, r.stderr.toString());
    assert.match(r.stderr.toString(), /upload damaged in transit/);
    assert.is(readFileSync(join(managed, 'a.pem'), 'utf8'), 'old public\n');
    assert.equal(readdirSync(managed), ['a.pem']);
    assert.not.ok(existsSync(tempPath(sb.plan.files[0]!.path, 'feedf00d')));
  } finally {
    sb.remove();
  }
});

test.run();
