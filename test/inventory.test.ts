import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync, mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseInventory, loadInventory } from '../lib/inventory.ts';
import { InputError } from '../lib/errors.ts';

const shipped = JSON.parse(readFileSync(new URL('../inventory.json', import.meta.url), 'utf8'));
const clone = () => structuredClone(shipped);

test('the shipped inventory loads with defaults applied', () => {
  const inv = parseInventory(shipped, 'inventory.json');
  assert.is(inv.controllers.length, 3);
  assert.is(inv.workers.length, 2);
  assert.is(inv.loadBalancer.name, 'lb-0');
  assert.is(inv.cluster.serviceIp, '10.32.0.1');
  assert.is(inv.pki.certValidityMs, 8760 * 3_600_000);
  assert.is(inv.encryption.provider, 'secretbox');
  assert.equal(inv.hosts.map((h) => h.role), ['loadbalancer', 'controller', 'controller', 'controller', 'worker', 'worker']);
});

test('optional blocks get documented defaults', () => {
  const inv = parseInventory({
    provider: 'lab', cluster: { name: 'mini' },
    loadBalancer: { name: 'lb', privateIp: '10.240.0.5' },
    controllers: [{ name: 'c0', privateIp: '10.240.0.10' }],
    workers: [{ name: 'w0', privateIp: '10.240.0.20' }, { name: 'w1', privateIp: '10.240.0.21' }],
  });
  assert.is(inv.cluster.domain, 'cluster.local');
  assert.is(inv.cluster.serviceCidr, '10.32.0.0/24');
  assert.is(inv.pki.tool, 'cfssl');
  assert.is(inv.pki.keyAlgorithm, 'rsa-2048');
  assert.is(inv.networkCidr, '10.240.0.0/24');
  assert.equal(inv.workers.map((w) => w.podCidr), ['10.200.0.0/24', '10.200.1.0/24']);
  assert.is(inv.ssh.user, 'root');
});

test('the Service IP is derived from cluster.serviceCidr', () => {
  const inv = clone();
  inv.cluster.serviceCidr = '172.20.64.0/18';
  assert.is(parseInventory(inv).cluster.serviceIp, '172.20.64.1');
});

// Each bad input: how to break the shipped inventory, and what the message must say (field path + value + expectation).
const bad: [string, (i: any) => void, RegExp][] = [
  ['unknown top-level field', (i) => { i.contollers = i.controllers; }, /contollers: unknown field/],
  ['unknown nested field', (i) => { i.pki.tol = 'cfssl'; }, /pki\.tol: unknown field/],
  ['unknown host field', (i) => { i.workers[0].ip = '1.2.3.4'; }, /workers\[0\]\.ip: unknown field/],
  ['invalid IP', (i) => { i.controllers[1].privateIp = '10.240.0.300'; }, /controllers\[1\]\.privateIp: "10\.240\.0\.300" is not a valid IPv4 address/],
  ['IP with leading zero', (i) => { i.controllers[1].privateIp = '10.240.0.011'; }, /controllers\[1\]\.privateIp: "10\.240\.0\.011" is not a valid IPv4/],
  ['duplicate IP', (i) => { i.workers[1].privateIp = '10.240.0.20'; }, /workers\[1\]\.privateIp: "10\.240\.0\.20" is already used by workers\[0\]\.privateIp/],
  ['duplicate name', (i) => { i.workers[1].name = 'controller-0'; }, /workers\[1\]\.name: "controller-0" is already used by controllers\[0\]\.name/],
  ['name not DNS-1123', (i) => { i.workers[0].name = 'Worker_0'; }, /workers\[0\]\.name: "Worker_0" is not a DNS-1123 label/],
  ['name too long', (i) => { i.workers[0].name = 'w'.repeat(64); }, /workers\[0\]\.name: "w{64}" is not a DNS-1123 label/],
  ['IP outside the VPC', (i) => { i.controllers[0].privateIp = '10.241.0.10'; }, /controllers\[0\]\.privateIp: "10\.241\.0\.10" is not a usable host address inside lab\.cidr "10\.240\.0\.0\/24"/],
  ['network address as host', (i) => { i.controllers[0].privateIp = '10.240.0.0'; }, /controllers\[0\]\.privateIp: "10\.240\.0\.0" is not a usable host address/],
  ['service CIDR overlaps VPC', (i) => { i.cluster.serviceCidr = '10.240.0.0/16'; }, /cluster\.serviceCidr: "10\.240\.0\.0\/16" overlaps lab\.cidr "10\.240\.0\.0\/24"/],
  ['pod CIDR overlaps service CIDR', (i) => { i.cluster.podCidr = '10.32.0.0/16'; i.workers.forEach((w: any) => delete w.podCidr); }, /cluster\.podCidr: "10\.32\.0\.0\/16" overlaps cluster\.serviceCidr/],
  ['CIDR with host bits', (i) => { i.cluster.serviceCidr = '10.32.0.1/24'; }, /cluster\.serviceCidr: "10\.32\.0\.1\/24" is not a valid CIDR: host bits are set/],
  ['worker pod CIDR outside cluster pod CIDR', (i) => { i.workers[0].podCidr = '10.99.0.0/24'; }, /workers\[0\]\.podCidr: "10\.99\.0\.0\/24" is not inside cluster\.podCidr/],
  ['worker pod CIDRs overlap', (i) => { i.workers[1].podCidr = '10.200.0.0/24'; }, /workers\[1\]\.podCidr: "10\.200\.0\.0\/24" overlaps workers\[0\]\.podCidr/],
  ['unknown tool', (i) => { i.pki.tool = 'easyrsa'; }, /pki\.tool: got "easyrsa", expected one of "cfssl", "openssl"/],
  ['unknown algorithm', (i) => { i.pki.keyAlgorithm = 'rsa-1024'; }, /pki\.keyAlgorithm: got "rsa-1024", expected one of "rsa-2048", "ecdsa-p256"/],
  ['validity not a duration', (i) => { i.pki.certValidity = '1 year'; }, /pki\.certValidity: "1 year" is not a duration/],
  ['validity in days (not a Go duration)', (i) => { i.pki.caValidity = '3650d'; }, /pki\.caValidity: "3650d" is not a duration/],
  ['zero validity', (i) => { i.pki.certValidity = '0h'; }, /pki\.certValidity: "0h" is not a duration/],
  ['leaf outlives CA', (i) => { i.pki.certValidity = '100000h'; }, /pki\.certValidity: "100000h" is longer than caValidity/],
  ['no controllers', (i) => { i.controllers = []; }, /controllers: needs at least one controller/],
  ['controllers not an array', (i) => { i.controllers = { name: 'x' }; }, /controllers: expected an array, got an object/],
  ['unknown provider', (i) => { i.provider = 'gcp'; }, /provider: got "gcp", expected one of "aws", "lab"/],
  ['missing cluster name', (i) => { delete i.cluster.name; }, /cluster\.name: is required/],
  ['aws without operatorCidr', (i) => { i.provider = 'aws'; delete i.aws.operatorCidr; }, /aws\.operatorCidr: is required for the aws provider/],
  ['bad AMI id', (i) => { i.aws.ami = 'ubuntu'; }, /aws\.ami: "ubuntu" is not an AMI id/],
  ['unknown encryption provider', (i) => { i.encryption = { provider: 'kms' }; }, /encryption\.provider: got "kms"/],
  ['number where a string belongs', (i) => { i.cluster.name = 7; }, /cluster\.name: expected a non-empty string, got number 7/],
];

for (const [name, mutate, message] of bad) {
  test(`refuses: ${name}`, () => {
    const inv = clone();
    mutate(inv);
    try {
      parseInventory(inv, 'inventory.json');
      assert.unreachable('accepted a bad inventory');
    } catch (e) {
      assert.instance(e, InputError);
      assert.match((e as Error).message, /^inventory\.json: /);
      assert.match((e as Error).message, message);
    }
  });
}

test('refuses a file that is not JSON, naming the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hw-inv-'));
  try {
    writeFileSync(join(dir, 'inv.json'), '{ "provider": "lab", }');
    assert.throws(() => loadInventory(join(dir, 'inv.json')), (e: Error) => e instanceof InputError && /inv\.json: not valid JSON/.test(e.message));
    assert.throws(() => loadInventory(join(dir, 'missing.json')), (e: Error) => /missing\.json: cannot read the inventory \(ENOENT\)/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('merges what 01-infra discovered, and refuses a contradiction', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hw-inv-'));
  try {
    writeFileSync(join(dir, 'inventory.json'), JSON.stringify(shipped));
    writeFileSync(join(dir, 'infra-hosts.json'), '');
    const infra = join(dir, 'ws', 'infra');
    spawnSync('mkdir', ['-p', infra]);
    writeFileSync(join(infra, 'hosts.json'), JSON.stringify({ hosts: { 'lb-0': { publicIp: '203.0.113.7' }, 'controller-1': { publicIp: '198.51.100.11' } } }));
    const inv = loadInventory(join(dir, 'inventory.json'), join(dir, 'ws'));
    assert.is(inv.loadBalancer.publicIp, '203.0.113.7');
    assert.is(inv.controllers[1]!.publicIp, '198.51.100.11');
    assert.is(inv.controllers[0]!.publicIp, undefined);
    const contradicting = clone();
    contradicting.loadBalancer.publicIp = '203.0.113.8';
    writeFileSync(join(dir, 'inventory.json'), JSON.stringify(contradicting));
    assert.throws(() => loadInventory(join(dir, 'inventory.json'), join(dir, 'ws')), /loadBalancer\.publicIp: "203\.0\.113\.8" differs from 203\.0\.113\.7/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the real script: bad input exits 2 with one line, no stack, nothing written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hw-inv-'));
  try {
    const inv = clone();
    inv.workers[0].privateIp = '10.240.0.999';
    writeFileSync(join(dir, 'inventory.json'), JSON.stringify(inv));
    const ws = join(dir, 'generated');
    const res = spawnSync(process.execPath, ['scripts/03-pki.mjs', '--inventory', join(dir, 'inventory.json'), '--dir', ws], { encoding: 'utf8' });
    assert.is(res.status, 2);
    assert.match(res.stderr, /workers\[0\]\.privateIp: "10\.240\.0\.999" is not a valid IPv4 address/);
    assert.not.match(res.stderr, /\n\s+at /); // no stack trace
    assert.is(res.stderr.trim().split('\n').length, 1);
    assert.is(existsSync(ws), false);
    const flag = spawnSync(process.execPath, ['scripts/03-pki.mjs', '--no-such-flag'], { encoding: 'utf8' });
    assert.is(flag.status, 2);
    assert.match(flag.stderr, /Unknown option '--no-such-flag'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
