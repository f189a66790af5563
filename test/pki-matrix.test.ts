// 03-pki on the real binaries, both tools x both key algorithms, default inventory: every chain
// is accepted by `openssl verify` against its own CA only; both tools give the same certificates
// (apart from keys, serials, fingerprints and dates); file modes; the MISSION §2 traps.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseInventory } from '../lib/inventory.ts';
import { planPki } from '../lib/pki/plan.ts';
import {
  CA_IDS, makeInventory, workspace, runPkiJson, opensslVerify, x509Text, extension, pkiEntries, pool, run, checkWorkspace,
  type Workspace,
} from './helpers/pki.ts';

const TOOLS = ['cfssl', 'openssl'] as const;
const ALGS = ['rsa-2048', 'ecdsa-p256'] as const;
type Combo = `${(typeof TOOLS)[number]}/${(typeof ALGS)[number]}`;

const plan = planPki(parseInventory(makeInventory()));
const rows = [...plan.cas, ...plan.leaves];

// One workspace per combination, signed once by the real CLI before the tests look at it.
const spaces = new Map<Combo, Workspace>();
const results = new Map<Combo, Record<string, unknown>>();
for (const tool of TOOLS) {
  for (const alg of ALGS) {
    const ws = workspace(makeInventory({ tool, keyAlgorithm: alg }), `matrix-${tool}-${alg}`);
    spaces.set(`${tool}/${alg}`, ws);
    results.set(`${tool}/${alg}`, (await runPkiJson(ws)).result);
  }
}
test.after(() => {
  for (const ws of spaces.values()) ws.remove();
});

const certOf = (ws: Workspace, id: string) => join(ws.dir, 'pki', id, 'cert.pem');

for (const [combo, ws] of spaces) {
  test(`${combo}: the run signed 3 CAs and every leaf, nothing failed`, () => {
    const r = results.get(combo)!;
    assert.equal(r.ok, true);
    assert.equal(r.cas, { 'kubernetes-ca': 'created', 'etcd-ca': 'created', 'front-proxy-ca': 'created' });
    assert.is(r.signed, plan.leaves.length);
    assert.is(r.kept, 0);
    assert.equal(r.failed, []);
    assert.is(r.serviceAccount, 'created');
  });

  test(`${combo}: every certificate verifies against its own CA and against neither other CA`, async () => {
    const checks = rows.flatMap((row) => CA_IDS.map((ca) => ({ row, ca })));
    const outcomes = await pool(checks, 4, async ({ row, ca }) => ({ row, ca, ...(await opensslVerify(certOf(ws, ca), certOf(ws, row.id))) }));
    const wrong = outcomes.filter((o) => o.ok !== (o.ca === o.row.signer)).map((o) =>
      `${o.row.id} against ${o.ca}: openssl says ${o.ok ? 'OK' : 'no'} (${o.output.trim().split('\n').pop()})`);
    assert.equal(wrong, []);
    // A refusal must be a real chain failure, not a missing file.
    const refused = outcomes.filter((o) => !o.ok);
    assert.is(refused.length, rows.length * 2);
    for (const o of refused) assert.match(o.output, /unable to get local issuer certificate|certificate signature failure|self-signed certificate/);
  });

  test(`${combo}: key algorithm and key usage as configured, CA:TRUE only on the CAs`, async () => {
    const alg = combo.split('/')[1];
    const texts = await pool(rows, 4, async (r) => ({ r, text: await x509Text(certOf(ws, r.id)) }));
    for (const { r, text } of texts) {
      if (alg === 'rsa-2048') assert.match(text, /Public Key Algorithm: rsaEncryption\s+Public-Key: \(2048 bit\)/, r.id);
      else assert.match(text, /Public Key Algorithm: id-ecPublicKey\s+Public-Key: \(256 bit\)[\s\S]*NIST CURVE: P-256/, r.id);
      const isCa = r.profile === 'ca';
      assert.is(extension(text, 'Basic Constraints'), `critical CA:${isCa ? 'TRUE' : 'FALSE'}`, r.id);
      const ku = isCa ? 'Certificate Sign, CRL Sign' : alg === 'rsa-2048' ? 'Digital Signature, Key Encipherment' : 'Digital Signature';
      assert.is(extension(text, 'Key Usage'), `critical ${ku}`, r.id);
    }
  });

  test(`${combo}: keys are 0600, certificates and public files 0644`, () => {
    const pki = join(ws.dir, 'pki');
    let keys = 0;
    for (const d of readdirSync(pki)) {
      for (const f of readdirSync(join(pki, d))) {
        const m = statSync(join(pki, d, f)).mode & 0o777;
        if (f === 'key.pem' || f === 'sa.key') {
          keys++;
          assert.is(m.toString(8), '600', `${d}/${f}`);
        } else if (f === 'commands.sh') assert.is(m.toString(8), '755', `${d}/${f}`);
        else assert.is(m.toString(8), '644', `${d}/${f}`);
      }
    }
    assert.is(keys, rows.length + 1);
  });

  test(`${combo}: the whole workspace checks out (manifest sha256s, key/cert pairs, fingerprints)`, async () => {
    assert.equal(await checkWorkspace(ws.dir, ws.inventory()), []);
  });
}

/**
 * What must be equal whoever signed: subject, issuer, SANs, usages, lifetime, manifest routing.
 * Lists are sorted: cfssl writes a kubelet's EKUs as server, client; openssl in the plan's order.
 */
async function comparable(ws: Workspace) {
  const entries = pkiEntries(ws.dir).map((e) => {
    const c = e.certificate;
    return {
      id: e.id, kind: e.kind, path: e.path, secret: e.secret, destinations: e.destinations, purpose: e.purpose,
      ...(c ? {
        cn: c.cn, o: c.o, sans: [...c.sans].sort(), usages: [...c.usages].sort(), signer: c.signer, isCa: c.isCa, keyAlgorithm: c.keyAlgorithm,
        lifetimeMs: Date.parse(c.notAfter) - Date.parse(c.notBefore),
      } : {}),
    };
  });
  const certs = await pool(rows, 4, async (r) => {
    const res = await run('openssl', ['x509', '-in', certOf(ws, r.id), '-noout', '-subject', '-issuer', '-nameopt', 'RFC2253']);
    const text = await x509Text(certOf(ws, r.id));
    const san = extension(text, 'Subject Alternative Name');
    if ((r.dnsNames.length + r.ips.length > 0) !== (san !== undefined)) throw new Error(`${r.id}: SAN extension ${san ? 'present' : 'absent'} in ${ws.dir}`);
    return {
      id: r.id, names: res.stdout.trim(),
      ku: extension(text, 'Key Usage'), eku: extension(text, 'Extended Key Usage')?.split(', ').sort().join(', '), bc: extension(text, 'Basic Constraints'),
      san: san?.split(', ').sort().join(', '),
    };
  });
  return { entries, certs };
}

for (const alg of ALGS) {
  test(`${alg}: cfssl and openssl give the same subjects, SANs, usages and validity`, async () => {
    const a = await comparable(spaces.get(`cfssl/${alg}`)!);
    const b = await comparable(spaces.get(`openssl/${alg}`)!);
    assert.equal(a.certs, b.certs);
    assert.equal(a.entries, b.entries);
    // and the lifetimes are the configured ones, to the minute
    const life = new Map(a.entries.filter((e) => 'lifetimeMs' in e).map((e) => [e.id, e.lifetimeMs]));
    assert.is(life.get('kubernetes-ca/cert'), 87600 * 3_600_000);
    assert.is(life.get('admin/cert'), 8760 * 3_600_000);
  });
}

test('the certificates say what MISSION §2 says (read back with openssl, cfssl/rsa-2048)', async () => {
  const ws = spaces.get('cfssl/rsa-2048')!;
  const subj = async (id: string) => (await run('openssl', ['x509', '-in', certOf(ws, id), '-noout', '-subject', '-nameopt', 'RFC2253'])).stdout.trim();
  const api = await x509Text(certOf(ws, 'kube-apiserver'));
  const san = extension(api, 'Subject Alternative Name')!;
  for (const want of ['IP Address:10.32.0.1', 'DNS:kubernetes.default.svc.cluster.local', 'DNS:kubernetes', 'IP Address:127.0.0.1',
    'IP Address:10.240.0.5', 'IP Address:10.240.0.10', 'DNS:controller-2']) {
    assert.ok(san.split(', ').includes(want), `kube-apiserver SAN lacks ${want}: ${san}`);
  }
  assert.not.match(san, /kubernetes\.svc\.cluster\.local/); // the guide's typo
  assert.is(extension(api, 'Extended Key Usage'), 'TLS Web Server Authentication');
  assert.is(await subj('kubelet-worker-1'), 'subject=CN=system:node:worker-1,O=system:nodes');
  const kubelet = await x509Text(certOf(ws, 'kubelet-worker-1'));
  assert.is(extension(kubelet, 'Subject Alternative Name'), 'DNS:worker-1, IP Address:10.240.0.21');
  assert.match(extension(kubelet, 'Extended Key Usage')!, /TLS Web Client Authentication/);
  assert.match(extension(kubelet, 'Extended Key Usage')!, /TLS Web Server Authentication/);
  assert.is(await subj('admin'), 'subject=CN=admin,O=system:masters');
  assert.is(await subj('apiserver-kubelet-client'), 'subject=CN=kube-apiserver-kubelet-client,O=system:masters');
  assert.is(await subj('apiserver-etcd-client'), 'subject=CN=kube-apiserver-etcd-client');
  assert.is(await subj('kube-controller-manager'), 'subject=CN=system:kube-controller-manager');
  const etcd = await x509Text(certOf(ws, 'etcd-server-controller-0'));
  assert.is(extension(etcd, 'Subject Alternative Name'), 'DNS:controller-0, DNS:localhost, IP Address:10.240.0.10, IP Address:127.0.0.1');
  const peer = await x509Text(certOf(ws, 'etcd-peer-controller-0'));
  assert.is(extension(peer, 'Subject Alternative Name'), 'DNS:controller-0, IP Address:10.240.0.10');
  // The service-account pair is a bare key pair: no certificate beside it.
  assert.equal(readdirSync(join(ws.dir, 'pki', 'service-account')).filter((f) => f.endsWith('.pem')), []);
});

test.run();
