import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { parseInventory } from '../lib/inventory.ts';
import { planPki, sansOf, type CertRow } from '../lib/pki/plan.ts';

const shipped = JSON.parse(readFileSync(new URL('../inventory.json', import.meta.url), 'utf8'));
const rowsById = (rows: readonly CertRow[]) => new Map(rows.map((r) => [r.id, r]));

test('the shipped inventory: every row of MISSION.md §2, character for character', () => {
  const plan = planPki(parseInventory(shipped));
  assert.equal(plan.cas.map((c) => [c.id, c.cn, c.signer]), [
    ['kubernetes-ca', 'kubernetes-ca', 'kubernetes-ca'], ['etcd-ca', 'etcd-ca', 'etcd-ca'], ['front-proxy-ca', 'front-proxy-ca', 'front-proxy-ca'],
  ]);
  const table = plan.leaves.map((r) => [r.id, r.cn, r.o.join('+'), [...r.usages].sort().join('+'), r.signer]);
  assert.equal(table, [
    ['kube-apiserver', 'kube-apiserver', '', 'serverAuth', 'kubernetes-ca'],
    ['apiserver-kubelet-client', 'kube-apiserver-kubelet-client', 'system:masters', 'clientAuth', 'kubernetes-ca'],
    ['kubelet-worker-0', 'system:node:worker-0', 'system:nodes', 'clientAuth+serverAuth', 'kubernetes-ca'],
    ['kubelet-worker-1', 'system:node:worker-1', 'system:nodes', 'clientAuth+serverAuth', 'kubernetes-ca'],
    ['kube-controller-manager', 'system:kube-controller-manager', '', 'clientAuth', 'kubernetes-ca'],
    ['kube-scheduler', 'system:kube-scheduler', '', 'clientAuth', 'kubernetes-ca'],
    ['kube-proxy', 'system:kube-proxy', '', 'clientAuth', 'kubernetes-ca'],
    ['admin', 'admin', 'system:masters', 'clientAuth', 'kubernetes-ca'],
    ['etcd-server-controller-0', 'controller-0', '', 'clientAuth+serverAuth', 'etcd-ca'],
    ['etcd-server-controller-1', 'controller-1', '', 'clientAuth+serverAuth', 'etcd-ca'],
    ['etcd-server-controller-2', 'controller-2', '', 'clientAuth+serverAuth', 'etcd-ca'],
    ['etcd-peer-controller-0', 'controller-0', '', 'clientAuth+serverAuth', 'etcd-ca'],
    ['etcd-peer-controller-1', 'controller-1', '', 'clientAuth+serverAuth', 'etcd-ca'],
    ['etcd-peer-controller-2', 'controller-2', '', 'clientAuth+serverAuth', 'etcd-ca'],
    ['apiserver-etcd-client', 'kube-apiserver-etcd-client', '', 'clientAuth', 'etcd-ca'],
    ['front-proxy-client', 'front-proxy-client', '', 'clientAuth', 'front-proxy-ca'],
  ]);
  const rows = rowsById(plan.leaves);
  assert.equal(sansOf(rows.get('kube-apiserver')!), [
    'DNS:controller-0', 'DNS:controller-1', 'DNS:controller-2', 'DNS:kubernetes', 'DNS:kubernetes.default',
    'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local',
    'IP:10.32.0.1', 'IP:10.240.0.10', 'IP:10.240.0.11', 'IP:10.240.0.12', 'IP:10.240.0.5', 'IP:127.0.0.1',
  ]);
  assert.equal(sansOf(rows.get('kubelet-worker-1')!), ['DNS:worker-1', 'IP:10.240.0.21']);
  assert.equal(sansOf(rows.get('etcd-server-controller-2')!), ['DNS:controller-2', 'DNS:localhost', 'IP:10.240.0.12', 'IP:127.0.0.1']);
  assert.equal(sansOf(rows.get('etcd-peer-controller-2')!), ['DNS:controller-2', 'IP:10.240.0.12']);
  for (const id of ['admin', 'kube-proxy', 'apiserver-etcd-client', 'front-proxy-client']) assert.equal(sansOf(rows.get(id)!), []);
});

test("the guide's traps are absent: no kubernetes.svc.<domain>, Service IP from serviceCidr, kubelet CN = node name", () => {
  const inv = structuredClone(shipped);
  inv.cluster.domain = 'corp.example';
  inv.cluster.serviceCidr = '10.96.0.0/12';
  const plan = planPki(parseInventory(inv));
  const api = rowsById(plan.leaves).get('kube-apiserver')!;
  assert.ok(api.dnsNames.includes('kubernetes.default.svc.corp.example'));
  assert.not.ok(api.dnsNames.some((d) => d === 'kubernetes.svc.corp.example' || d.endsWith('cluster.local')));
  assert.ok(api.ips.includes('10.96.0.1'));
  assert.not.ok(api.ips.includes('10.32.0.1'));
  for (const w of plan.leaves.filter((r) => r.id.startsWith('kubelet-'))) {
    assert.is(w.cn, `system:node:${w.dnsNames[0]}`);
  }
});

test('public addresses, when known, join the SANs of the API server and kubelets', () => {
  const inv = structuredClone(shipped);
  inv.loadBalancer.publicIp = '203.0.113.7';
  inv.controllers[0].publicIp = '203.0.113.10';
  inv.workers[1].publicIp = '203.0.113.21';
  const rows = rowsById(planPki(parseInventory(inv)).leaves);
  assert.ok(rows.get('kube-apiserver')!.ips.includes('203.0.113.7'));
  assert.ok(rows.get('kube-apiserver')!.ips.includes('203.0.113.10'));
  assert.equal(rows.get('kubelet-worker-1')!.ips, ['10.240.0.21', '203.0.113.21']);
  assert.equal(rows.get('kubelet-worker-0')!.ips, ['10.240.0.20']);
});

test('one controller, no workers: a smaller table, same shape', () => {
  const plan = planPki(parseInventory({
    provider: 'lab', cluster: { name: 'one' }, loadBalancer: { name: 'lb', privateIp: '10.240.0.5' },
    controllers: [{ name: 'solo', privateIp: '10.240.0.10' }], workers: [],
  }));
  assert.is(plan.leaves.length, 10);
  assert.equal(plan.leaves.filter((r) => r.signer === 'etcd-ca').map((r) => r.id), ['etcd-server-solo', 'etcd-peer-solo', 'apiserver-etcd-client']);
});

test('least privilege (MISSION.md §3): who receives which key', () => {
  const inv = parseInventory(shipped);
  const plan = planPki(inv);
  const all = [...plan.cas, ...plan.leaves];
  const keyHosts = (id: string) => [...new Set(all.find((r) => r.id === id)!.keyTo.map((d) => d.host))];
  assert.equal(keyHosts('kubernetes-ca'), ['controller-0', 'controller-1', 'controller-2']);
  assert.equal(keyHosts('etcd-ca'), []);
  assert.equal(keyHosts('front-proxy-ca'), []);
  assert.equal(keyHosts('admin'), []);
  assert.equal(keyHosts('kubelet-worker-0'), ['worker-0']);
  assert.equal(keyHosts('etcd-server-controller-1'), ['controller-1']);
  assert.equal(keyHosts('etcd-peer-controller-1'), ['controller-1']);
  // Workers get the kubernetes-ca certificate, their own kubelet pair and nothing else from the PKI.
  for (const w of inv.workers) {
    const got = all.flatMap((r) => [...r.certTo, ...r.keyTo].filter((d) => d.host === w.name).map((d) => d.path)).sort();
    assert.equal(got, ['/var/lib/kubelet/kubelet-key.pem', '/var/lib/kubelet/kubelet.pem', '/var/lib/kubernetes/ca.pem']);
  }
  // The load balancer gets nothing from the PKI.
  assert.equal(all.flatMap((r) => [...r.certTo, ...r.keyTo]).filter((d) => d.host === 'lb-0'), []);
  // Keys are 0600, certificates 0644; no two files land on the same path of one host.
  for (const r of all) {
    r.keyTo.forEach((d) => assert.is(d.mode, '0600'));
    r.certTo.forEach((d) => assert.is(d.mode, '0644'));
  }
  const targets = [...all.flatMap((r) => [...r.certTo, ...r.keyTo]), ...plan.serviceAccount.keyTo, ...plan.serviceAccount.pubTo].map((d) => `${d.host}:${d.path}`);
  assert.is(new Set(targets).size, targets.length);
});

test('the plan is a pure function of the inventory', () => {
  const inv = parseInventory(shipped);
  assert.equal(planPki(inv), planPki(parseInventory(structuredClone(shipped))));
});

test.run();
