// Pure parts of 04-kubeconfig: the plan table, rendering, the encryption keys and re-run reasons.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parse as parseYaml } from 'yaml';
import { parseInventory } from '../lib/inventory.ts';
import { planKubeconfigs, encryptionDestinations } from '../lib/kubeconfig/plan.ts';
import { loadTemplate, renderKubeconfig, renderEncryptionConfig, KUBECONFIG_TEMPLATE, ENCRYPTION_TEMPLATE, type KubeconfigData } from '../lib/kubeconfig/render.ts';
import { initialKeys, parseEncryptionConfig, rotate, dropOldKeys, nextKeyName, activeKey, KEY_BYTES, type EncryptionKeys } from '../lib/kubeconfig/encryption.ts';
import { rewriteReason, type KubeconfigRecord } from '../lib/kubeconfig/inputs.ts';
import { inventoryJson } from './helpers/kubeconfig.ts';

const inv = (o?: Parameters<typeof inventoryJson>[0]) => parseInventory(inventoryJson(o), 'inventory.json');

test('plan: one kubeconfig per client, with the server each must use', () => {
  const rows = planKubeconfigs(inv({ controllers: 3 }));
  const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
  assert.equal(rows.map((r) => r.name), ['admin', 'admin-controller', 'kubelet-worker-0', 'kubelet-worker-1', 'kube-proxy', 'kube-controller-manager', 'kube-scheduler']);
  assert.equal(byName.admin!.server, 'https://10.240.0.5:6443', 'no public address known: the private one');
  assert.equal(byName['admin-controller']!.server, 'https://127.0.0.1:6443');
  assert.equal(byName['kubelet-worker-1']!.server, 'https://10.240.0.5:6443');
  assert.equal(byName['kube-proxy']!.server, 'https://10.240.0.5:6443');
  assert.equal(byName['kube-controller-manager']!.server, 'https://127.0.0.1:6443');
  assert.equal(byName['kube-scheduler']!.server, 'https://127.0.0.1:6443');
  assert.equal(byName['kubelet-worker-1']!.user, 'system:node:worker-1');
  assert.equal(byName['kubelet-worker-1']!.group, 'system:nodes');
  assert.equal(byName['kubelet-worker-1']!.certId, 'kubelet-worker-1');
  assert.equal(byName.admin!.group, 'system:masters');
  for (const r of rows) assert.equal(r.path, `kubeconfigs/${r.name}.kubeconfig`);
});

test('plan: the workstation admin kubeconfig uses the public address when one is known', () => {
  const rows = planKubeconfigs(inv({ lbPublicIp: '203.0.113.7' }));
  assert.equal(rows[0]!.server, 'https://203.0.113.7:6443');
  assert.equal(rows[0]!.serverFrom, 'loadBalancer.publicIp');
  assert.equal(rows.find((r) => r.name === 'kube-proxy')!.server, 'https://10.240.0.5:6443', 'in-cluster clients stay on the private address');
});

test('plan: each host receives exactly what MISSION.md §3 gives it, 0600', () => {
  const i = inv({ controllers: 3 });
  const got = new Map<string, string[]>();
  for (const r of planKubeconfigs(i)) for (const d of r.destinations) {
    assert.is(d.mode, '0600', `${r.name} embeds a key`);
    got.set(d.host, [...(got.get(d.host) ?? []), `${r.name} -> ${d.path}`]);
  }
  for (const d of encryptionDestinations(i)) got.set(d.host, [...(got.get(d.host) ?? []), `encryption -> ${d.path}`]);
  for (const c of ['controller-0', 'controller-1', 'controller-2']) {
    assert.equal(got.get(c)!.sort(), [
      'admin-controller -> /var/lib/kubernetes/admin.kubeconfig',
      'encryption -> /var/lib/kubernetes/encryption-config.yaml',
      'kube-controller-manager -> /var/lib/kubernetes/kube-controller-manager.kubeconfig',
      'kube-scheduler -> /var/lib/kubernetes/kube-scheduler.kubeconfig',
    ]);
  }
  assert.equal(got.get('worker-0')!.sort(), ['kube-proxy -> /var/lib/kube-proxy/kubeconfig', 'kubelet-worker-0 -> /var/lib/kubelet/kubeconfig']);
  assert.equal(got.get('worker-1')!.sort(), ['kube-proxy -> /var/lib/kube-proxy/kubeconfig', 'kubelet-worker-1 -> /var/lib/kubelet/kubeconfig']);
  assert.not.ok(got.has('lb-0'), 'the load balancer gets nothing');
  assert.equal(planKubeconfigs(i)[0]!.destinations, [], 'the workstation admin kubeconfig goes nowhere');
  for (const d of encryptionDestinations(i)) assert.is(d.mode, '0600');
});

const PEM = (label: string, body = 'QUJD') => `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
const data = (over: Partial<KubeconfigData> = {}): KubeconfigData => ({
  header: ['kube-proxy.kubeconfig: test', 'second line'],
  cluster: 'hardway',
  server: 'https://10.240.0.5:6443',
  user: 'system:node:worker-0',
  context: 'system:node:worker-0@hardway',
  caPem: PEM('CERTIFICATE', 'Q0E='),
  certPem: PEM('CERTIFICATE', 'Q0VSVA=='),
  keyPem: PEM('PRIVATE KEY', 'S0VZ'),
  ...over,
});

test('kubeconfig render: the header, then a kubeconfig that parses to exactly the data', () => {
  const t = loadTemplate(KUBECONFIG_TEMPLATE);
  const text = renderKubeconfig(t, data());
  assert.ok(text.startsWith('# kube-proxy.kubeconfig: test\n# second line\napiVersion: v1\n'), text.slice(0, 200));
  const doc = parseYaml(text);
  assert.is(doc['current-context'], 'system:node:worker-0@hardway');
  assert.is(doc.users[0].name, 'system:node:worker-0', 'a name with colons survives YAML');
  assert.is(Buffer.from(doc.users[0].user['client-key-data'], 'base64').toString(), PEM('PRIVATE KEY', 'S0VZ'));
  assert.is(Buffer.from(doc.clusters[0].cluster['certificate-authority-data'], 'base64').toString(), PEM('CERTIFICATE', 'Q0E='));
  assert.is(renderKubeconfig(t, data()), text, 'deterministic: same data, same bytes');
  assert.not.ok(text.includes('&#x27;') || text.includes('&quot;') || text.includes('&amp;'), 'nothing HTML-escaped');
});

test('kubeconfig render: refuses missing or malformed values instead of writing them', () => {
  const t = loadTemplate(KUBECONFIG_TEMPLATE);
  const bad: [string, Partial<KubeconfigData> | Record<string, unknown>][] = [
    ['empty server', { server: '' }],
    ['missing user', { user: undefined }],
    ['http server', { server: 'http://10.240.0.5:6443' }],
    ['server without port', { server: 'https://10.240.0.5' }],
    ['key that is not a PEM key', { keyPem: PEM('CERTIFICATE') }],
    ['CA that is not a certificate', { caPem: 'hello' }],
    ['multi-line header', { header: ['a\nb'] }],
    ['no header', { header: [] }],
  ];
  for (const [what, over] of bad) assert.throws(() => renderKubeconfig(t, data(over as Partial<KubeconfigData>)), undefined, what);
});

const fixedRandom = (byte: number) => (n: number) => Buffer.alloc(n, byte);
const encHeader = ['encryption-config.yaml: test'];

test('encryption config: EncryptionConfiguration for secrets, 32-byte key, identity last', () => {
  for (const provider of ['secretbox', 'aescbc', 'aesgcm'] as const) {
    const keys = initialKeys(provider);
    const text = renderEncryptionConfig(loadTemplate(ENCRYPTION_TEMPLATE), { header: encHeader, providers: keys.providers });
    const doc = parseYaml(text);
    assert.is(doc.apiVersion, 'apiserver.config.k8s.io/v1');
    assert.is(doc.kind, 'EncryptionConfiguration');
    assert.is(doc.resources.length, 1);
    assert.equal(doc.resources[0].resources, ['secrets']);
    const providers = doc.resources[0].providers;
    assert.equal(Object.keys(providers[0]), [provider]);
    assert.is(providers[0][provider].keys[0].name, 'key-1');
    assert.is(Buffer.from(providers[0][provider].keys[0].secret, 'base64').length, KEY_BYTES);
    assert.equal(providers[providers.length - 1], { identity: {} });
    assert.equal(parseEncryptionConfig(text), keys, 'reads back what it wrote');
  }
  assert.is.not(initialKeys('secretbox').providers[0]!.keys[0]!.secret, initialKeys('secretbox').providers[0]!.keys[0]!.secret, 'random keys');
});

const render = (keys: EncryptionKeys) => renderEncryptionConfig(loadTemplate(ENCRYPTION_TEMPLATE), { header: encHeader, providers: keys.providers });

test('encryption config: reading refuses files it cannot trust, saying why', () => {
  const good = render(initialKeys('secretbox', fixedRandom(1)));
  const short = Buffer.alloc(31, 1).toString('base64');
  const cases: [string, string, RegExp][] = [
    ['identity not last', good.replace('      - identity: {}\n', '').replace('    providers:\n', '    providers:\n      - identity: {}\n'), /identity/],
    ['31-byte secretbox key', good.replace(Buffer.alloc(32, 1).toString('base64'), short), /31 bytes/],
    ['wrong kind', good.replace('kind: EncryptionConfiguration', 'kind: Config'), /kind/],
    ['not YAML', 'a: [', /YAML/],
    ['configmaps too', good.replace('      - secrets\n', '      - secrets\n      - configmaps\n'), /secrets/],
    ['unknown provider', good.replace('- secretbox:', '- kms:'), /expected one of/],
  ];
  for (const [what, text, message] of cases) assert.throws(() => parseEncryptionConfig(text), message, what);
  const twice = rotate(initialKeys('secretbox', fixedRandom(1)), 'secretbox', fixedRandom(2)).keys;
  assert.throws(() => parseEncryptionConfig(render(twice).replace('"key-2"', '"key-1"')), /used twice/);
});

test('rotation: a new first key, every old key kept after it, in order', () => {
  const first = initialKeys('secretbox', fixedRandom(1));
  const r1 = rotate(first, 'secretbox', fixedRandom(2));
  assert.is(r1.added.name, 'key-2');
  assert.is(r1.previous.name, 'key-1');
  assert.equal(r1.keys.providers.map((p) => [p.type, p.keys.map((k) => k.name)]), [['secretbox', ['key-2', 'key-1']]]);
  assert.is(r1.keys.providers[0]!.keys[1]!.secret, first.providers[0]!.keys[0]!.secret, 'the old key is kept byte for byte');
  const r2 = rotate(r1.keys, 'secretbox', fixedRandom(3));
  assert.equal(r2.keys.providers[0]!.keys.map((k) => k.name), ['key-3', 'key-2', 'key-1']);
  assert.equal(activeKey(r2.keys).key, r2.added);
  assert.equal(parseEncryptionConfig(render(r2.keys)), r2.keys);
});

test('rotation to another provider puts a new provider first and keeps the old one for reading', () => {
  const r = rotate(initialKeys('secretbox', fixedRandom(1)), 'aescbc', fixedRandom(2));
  assert.equal(r.keys.providers.map((p) => [p.type, p.keys.map((k) => k.name)]), [['aescbc', ['key-2']], ['secretbox', ['key-1']]]);
  const doc = parseYaml(render(r.keys));
  assert.equal(doc.resources[0].providers.map((p: object) => Object.keys(p)[0]), ['aescbc', 'secretbox', 'identity']);
});

test('dropping old keys keeps only the one that encrypts', () => {
  const r = rotate(rotate(initialKeys('secretbox', fixedRandom(1)), 'aesgcm', fixedRandom(2)).keys, 'aesgcm', fixedRandom(3));
  const d = dropOldKeys(r.keys);
  assert.equal(d.dropped, ['key-2', 'key-1']);
  assert.equal(d.keys.providers, [{ type: 'aesgcm', keys: [r.added] }]);
  assert.equal(dropOldKeys(d.keys).dropped, []);
});

test('key names never repeat, even after keys were dropped or named by hand', () => {
  assert.is(nextKeyName({ providers: [{ type: 'secretbox', keys: [{ name: 'key-7', secret: 'x' }] }] }), 'key-8');
  assert.is(nextKeyName({ providers: [{ type: 'secretbox', keys: [{ name: 'mine', secret: 'x' }, { name: 'other', secret: 'y' }] }] }), 'key-3');
});

test('re-run reasons: one line naming what changed', () => {
  const old: KubeconfigRecord = { server: 'https://10.240.0.5:6443', cluster: 'c', user: 'u', ca: 'a', cert: 'b', key: 'k', template: 't', output: 'o' };
  const cases: [Partial<KubeconfigRecord>, string][] = [
    [{ server: 'https://10.240.0.6:6443' }, 'server changed (https://10.240.0.5:6443 -> https://10.240.0.6:6443)'],
    [{ cert: 'b2' }, 'client certificate changed'],
    [{ cert: 'b2', key: 'k2' }, 'client certificate and key changed'],
    [{ ca: 'a2' }, 'CA certificate changed'],
    [{ template: 't2' }, 'template changed'],
    [{ cluster: 'd' }, 'cluster name changed (c -> d)'],
    [{ server: 'https://x:6443', cert: 'b2' }, 'server changed (https://10.240.0.5:6443 -> https://x:6443); client certificate changed'],
  ];
  for (const [change, want] of cases) assert.is(rewriteReason(old, { ...old, ...change }, 'o'), want);
  assert.match(rewriteReason(old, old, 'other'), /edited by hand/);
  assert.match(rewriteReason(undefined, old, 'o'), /no record/);
});

test.run();
