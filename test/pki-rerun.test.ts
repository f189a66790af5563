// Re-running 03-pki: an unchanged re-run keeps every byte and mtime and starts no process; an IP
// change re-signs only what names that IP (with the reason, and backups of the old files); a
// key-algorithm change never touches a CA but re-signs every leaf; a CA without its record is
// read back, not replaced.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseInventory } from '../lib/inventory.ts';
import { planPki } from '../lib/pki/plan.ts';
import {
  CA_IDS, makeInventory, workspace, runPkiJson, runPkiCli, snapshot, diffSnapshots, manifestFingerprints, pkiEntries,
  checkWorkspace, x509Text, extension, sha256, fingerprint, sleep, type Workspace,
} from './helpers/pki.ts';

const spaces: Workspace[] = [];
test.after(() => spaces.forEach((ws) => ws.remove()));
const fresh = async (opts: Parameters<typeof makeInventory>[0], label: string) => {
  const ws = workspace(makeInventory(opts), label);
  spaces.push(ws);
  await runPkiJson(ws);
  return ws;
};
const leafIds = planPki(parseInventory(makeInventory())).leaves.map((l) => l.id);
/**
 * Lines --verbose echoes for real cfssl/openssl commands. (03-pki also sends its "kept" notes
 * through log.command, which prints them with the same "$ " prefix, so match on the tool.)
 */
const commandLines = (stderr: string) => stderr.split('\n').filter((l) => /^\$ (.*: )?(openssl|cfssl|cfssljson) /.test(l));

for (const [tool, alg] of [['cfssl', 'rsa-2048'], ['openssl', 'ecdsa-p256']] as const) {
  test(`${tool}/${alg}: an unchanged re-run keeps every byte and mtime, adds nothing and runs no command`, async () => {
    const ws = workspace(makeInventory({ tool, keyAlgorithm: alg }), `rerun-${tool}`);
    spaces.push(ws);
    const first = await runPkiCli(ws, ['--verbose']);
    assert.is(first.code, 0, first.stderr);
    assert.ok(commandLines(first.stderr).length > leafIds.length, 'a fresh --verbose run echoes its commands');
    const before = snapshot(ws.dir);
    const { result, ran } = await runPkiJson(ws, ['--verbose']);
    assert.equal(diffSnapshots(before, snapshot(ws.dir)), []);
    assert.equal(result.cas, { 'kubernetes-ca': 'kept', 'etcd-ca': 'kept', 'front-proxy-ca': 'kept' });
    assert.is(result.kept, leafIds.length);
    assert.is(result.signed, 0);
    assert.equal(result.resigned, []);
    assert.is(result.serviceAccount, 'kept');
    assert.equal(commandLines(ran.stderr), [], 'the unchanged re-run started a process');
    assert.match(ran.stderr, /using the existing CA/);
    // --dry-run agrees and writes nothing either.
    const dry = await runPkiJson(ws, ['--dry-run']);
    assert.equal(dry.result.wouldSign, []);
    assert.equal(diffSnapshots(before, snapshot(ws.dir)), []);
  });
}

test('an IP change re-signs only kube-apiserver and that controller\'s etcd certificates, with the reason and backups', async () => {
  const ws = await fresh({}, 'rerun-ip');
  const oldFp = manifestFingerprints(ws.dir);
  const oldSha = new Map(pkiEntries(ws.dir).map((e) => [e.id, e.sha256]));
  const before = snapshot(ws.dir);
  const inv = ws.inventory();
  inv.controllers[1].privateIp = '10.240.0.31';
  ws.writeInventory(inv);
  const changed = ['kube-apiserver', 'etcd-server-controller-1', 'etcd-peer-controller-1'];
  const reason = 'SANs changed (+10.240.0.31 -10.240.0.11)';

  const dry = await runPkiJson(ws, ['--dry-run']);
  assert.equal(dry.result.wouldSign, changed.map((id) => ({ id, reason })));
  assert.equal(diffSnapshots(before, snapshot(ws.dir)), [], 'a dry run wrote something');

  const { result, ran } = await runPkiJson(ws);
  assert.equal(result.resigned, changed.map((id) => ({ id, reason })));
  assert.is(result.kept, leafIds.length - 3);
  assert.is(result.signed, 0);
  for (const id of changed) assert.match(ran.stderr, new RegExp(`^${id}: SANs changed \\(\\+10\\.240\\.0\\.31 -10\\.240\\.0\\.11\\): re-signed; old files in backup/\\d{8}T\\d{6}Z(-\\d+)?/pki/${id}$`, 'm'));

  // Exactly those three fingerprints moved.
  const newFp = manifestFingerprints(ws.dir);
  const moved = [...newFp.keys()].filter((id) => newFp.get(id) !== oldFp.get(id)).sort();
  assert.equal(moved, [...changed].sort());
  // Nothing else was touched on disk: only the three directories, the manifest, the table and the backup.
  const touched = diffSnapshots(before, snapshot(ws.dir)).map((l) => l.replace(/^\w+ /, '').replace(/:.*$/, ''));
  const outside = touched.filter((p) => !changed.some((id) => p.startsWith(`pki/${id}/`)) && !p.startsWith('backup/') && !['manifest.json', 'certificates.md'].includes(p));
  assert.equal(outside, []);

  // The new certificates carry the new address, not the old one.
  for (const id of changed) {
    const san = extension(await x509Text(join(ws.dir, 'pki', id, 'cert.pem')), 'Subject Alternative Name')!;
    assert.ok(san.includes('IP Address:10.240.0.31'), `${id}: ${san}`);
    assert.not.ok(san.includes('IP Address:10.240.0.11'), `${id}: ${san}`);
  }
  // The old files are in backup/<ts>/pki/<id>, byte for byte what the manifest listed before.
  const stamps = readdirSync(join(ws.dir, 'backup'));
  assert.is(stamps.length, 1);
  const saved = join(ws.dir, 'backup', stamps[0]!, 'pki');
  assert.equal(readdirSync(saved).sort(), [...changed].sort());
  for (const id of changed) {
    assert.is(sha256(readFileSync(join(saved, id, 'cert.pem'))), oldSha.get(`${id}/cert`), `${id} cert backup`);
    assert.is(sha256(readFileSync(join(saved, id, 'key.pem'))), oldSha.get(`${id}/key`), `${id} key backup`);
    assert.ok(existsSync(join(saved, id, 'issued.json')));
  }
  assert.equal(await checkWorkspace(ws.dir, ws.inventory()), []);
  // And the next run is quiet again.
  const again = await runPkiJson(ws);
  assert.equal(again.result.resigned, []);
  assert.is(again.result.kept, leafIds.length);
});

test('two re-signing runs in the same second keep both backups', async () => {
  const ws = await fresh({ tool: 'openssl', keyAlgorithm: 'ecdsa-p256' }, 'rerun-backups');
  const setIp = (ip: string) => {
    const inv = ws.inventory();
    inv.controllers[1].privateIp = ip;
    ws.writeInventory(inv);
  };
  await sleep(1000 - (Date.now() % 1000) + 5); // start at the top of a second: both runs fit in it
  setIp('10.240.0.31');
  await runPkiJson(ws);
  setIp('10.240.0.41');
  await runPkiJson(ws);
  const stamps = readdirSync(join(ws.dir, 'backup')).sort();
  assert.is(stamps.length, 2, stamps.join(', '));
  const kept = await Promise.all(stamps.map(async (ts) =>
    extension(await x509Text(join(ws.dir, 'backup', ts, 'pki', 'kube-apiserver', 'cert.pem')), 'Subject Alternative Name')!.match(/10\.240\.0\.(11|31|41)/g)));
  assert.equal(kept, [['10.240.0.11'], ['10.240.0.31']]);
});

test('changing pki.keyAlgorithm never overwrites a CA: CA files byte-identical, a warning, every leaf re-signed', async () => {
  const ws = await fresh({ tool: 'cfssl', keyAlgorithm: 'rsa-2048' }, 'rerun-alg');
  const caSnap = () => new Map(CA_IDS.map((id) => [id, snapshot(join(ws.dir, 'pki', id))]));
  const before = caSnap();
  const inv = ws.inventory();
  inv.pki.keyAlgorithm = 'ecdsa-p256';
  ws.writeInventory(inv);
  const { result, ran } = await runPkiJson(ws);
  const after = caSnap();
  for (const id of CA_IDS) {
    assert.equal(diffSnapshots(before.get(id)!, after.get(id)!), [], `${id} changed`);
    assert.match(ran.stderr, new RegExp(`^warning: ${id}: kept although it is rsa-2048, the inventory now asks for ecdsa-p256\\.`, 'm'));
  }
  assert.equal(result.cas, { 'kubernetes-ca': 'kept', 'etcd-ca': 'kept', 'front-proxy-ca': 'kept' });
  assert.equal(result.resigned, leafIds.map((id) => ({ id, reason: 'key algorithm changed (rsa-2048 -> ecdsa-p256)' })));
  for (const id of leafIds) {
    const text = await x509Text(join(ws.dir, 'pki', id, 'cert.pem'));
    assert.match(text, /Public Key Algorithm: id-ecPublicKey/, id);
    assert.is(extension(text, 'Key Usage'), 'critical Digital Signature', id);
    assert.match(text, /Signature Algorithm: sha256WithRSAEncryption/, `${id} is signed by its RSA CA`);
  }
  assert.equal(await checkWorkspace(ws.dir, ws.inventory()), []);
  const again = await runPkiJson(ws);
  assert.is(again.result.kept, leafIds.length, 'the re-signed leaves are stable');
});

test('a CA whose issued.json is gone is read back with openssl and kept, and so are its leaves', async () => {
  const ws = await fresh({ tool: 'openssl', keyAlgorithm: 'ecdsa-p256' }, 'rerun-norecord');
  const pem = () => ['cert.pem', 'key.pem'].map((f) => readFileSync(join(ws.dir, 'pki', 'kubernetes-ca', f)));
  const [cert, key] = pem();
  rmSync(join(ws.dir, 'pki', 'kubernetes-ca', 'issued.json'));
  const { result, ran } = await runPkiJson(ws, ['--verbose']);
  const [cert2, key2] = pem();
  assert.ok(cert!.equals(cert2!) && key!.equals(key2!), 'the CA was rewritten');
  assert.is(result.cas['kubernetes-ca'], 'kept');
  assert.is(result.kept, leafIds.length);
  assert.match(ran.stderr, /^\$ [^\n]*openssl /m); // it started openssl to read the files back
  // The rebuilt record describes the files on disk, as openssl sees them.
  const rec = JSON.parse(readFileSync(join(ws.dir, 'pki', 'kubernetes-ca', 'issued.json'), 'utf8'));
  assert.is(rec.certSha256, sha256(cert!));
  assert.is(rec.keySha256, sha256(key!));
  assert.is(rec.facts.fingerprint, await fingerprint(join(ws.dir, 'pki', 'kubernetes-ca', 'cert.pem')));
  assert.is(rec.keyAlgorithm, 'ecdsa-p256');
});

test('a CA certificate without its key is refused, not replaced', async () => {
  const ws = await fresh({ tool: 'cfssl', keyAlgorithm: 'ecdsa-p256' }, 'rerun-nokey');
  const certPath = join(ws.dir, 'pki', 'etcd-ca', 'cert.pem');
  const cert = readFileSync(certPath);
  rmSync(join(ws.dir, 'pki', 'etcd-ca', 'key.pem'));
  const r = await runPkiCli(ws);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /etcd-ca: pki\/etcd-ca\/cert\.pem exists but key\.pem is missing; hardway never replaces an existing CA/);
  assert.ok(readFileSync(certPath).equals(cert));
  assert.not.ok(existsSync(join(ws.dir, 'pki', 'etcd-ca', 'key.pem')));
});

test.run();
