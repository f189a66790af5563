// Host keys from EC2 console output, in cloud-init's real format (fixtures under
// test/fixtures/aws/: a noble boot log with ECDSA, ED25519 and RSA keys made by ssh-keygen, and
// the same log as a serial console wraps it at 80 columns with CRLF line ends).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConsoleOutput, knownHostsLines } from '../lib/aws/consolekeys.ts';

const FIX = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'aws');
const plain = readFileSync(join(FIX, 'console-noble.txt'), 'utf8');
const wrapped = readFileSync(join(FIX, 'console-noble-wrapped80.txt'), 'utf8');
const expected = readFileSync(join(FIX, 'console-noble.pub'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => l.split(' ').slice(0, 2).join(' '));

const asLines = (keys: { type: string; blob: Buffer }[]) => keys.map((k) => `${k.type} ${k.blob.toString('base64')}`);

test('reads every key of the KEYS block and the FINGERPRINTS block of a real boot log', () => {
  const parsed = parseConsoleOutput(plain)!;
  assert.ok(parsed);
  assert.equal(asLines(parsed.keys), expected);
  assert.equal(parsed.fingerprints.map((f) => f.label), ['ECDSA', 'ED25519', 'RSA']);
  assert.equal(parsed.fingerprints.map((f) => f.bits), [256, 256, 3072]);
});

test('a console wrapped at 80 columns with CRLF line ends gives the same keys', () => {
  assert.ok(wrapped.includes('\r\n'));
  assert.ok(wrapped.split('\r\n').every((l) => l.length <= 80));
  const parsed = parseConsoleOutput(wrapped)!;
  assert.equal(asLines(parsed.keys), expected);
  assert.equal(parsed.fingerprints.length, 3, 'wrapped fingerprint lines are still read');
});

test('fingerprints match what ssh-keygen computes from the known_hosts written from them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hardway-kh-'));
  try {
    const parsed = parseConsoleOutput(plain)!;
    const file = join(dir, 'known_hosts');
    writeFileSync(file, `${knownHostsLines(['54.1.2.3', '10.240.0.10'], parsed.keys).join('\n')}\n`);
    const listed = execFileSync('ssh-keygen', ['-l', '-f', file], { encoding: 'utf8' }).trim().split('\n');
    assert.is(listed.length, 6);
    const printed = parsed.fingerprints.map((f) => f.fingerprint);
    for (const line of listed) assert.ok(printed.includes(line.split(' ')[1]!), line);
    assert.equal(parsed.keys.map((k) => k.fingerprint), printed.slice(0, 3));
    for (const host of ['54.1.2.3', '10.240.0.10']) {
      const found = execFileSync('ssh-keygen', ['-F', host, '-f', file], { encoding: 'utf8' });
      assert.match(found, /ssh-ed25519 AAAA/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nothing yet: no block, or a block still being written', () => {
  const boot = plain.slice(0, plain.indexOf('<14>'));
  assert.is(parseConsoleOutput(''), undefined);
  assert.is(parseConsoleOutput(boot), undefined);
  assert.is(parseConsoleOutput(plain.slice(0, plain.indexOf('-----END SSH HOST KEY KEYS'))), undefined);
});

test('a fingerprint that does not match its key is refused', () => {
  const fp = /SHA256:(\S+) root@ip-10-240-0-10 \(ED25519\)/.exec(plain)![1]!;
  const tampered = plain.replace(fp, 'x'.repeat(43));
  assert.throws(() => parseConsoleOutput(tampered), /ED25519 host key .* does not match the fingerprint/);
});

test('a fingerprint in the old MD5 form is checked too', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hardway-md5-'));
  try {
    const pub = join(dir, 'k.pub');
    writeFileSync(pub, `${readFileSync(join(FIX, 'console-noble.pub'), 'utf8').split('\n')[1]}\n`);
    const md5 = execFileSync('ssh-keygen', ['-l', '-E', 'md5', '-f', pub], { encoding: 'utf8' }).split(' ')[1]!; // MD5:aa:bb:...
    const old = plain.replace(/256 SHA256:\S+ (root@ip-10-240-0-10 \(ED25519\))/, `256 ${md5.slice(4)} $1`);
    assert.ok(parseConsoleOutput(old));
    const bad = plain.replace(/256 SHA256:\S+ (root@ip-10-240-0-10 \(ED25519\))/, `256 ${md5.slice(4).replace(/^../, md5.startsWith('MD5:00') ? '11' : '00')} $1`);
    assert.throws(() => parseConsoleOutput(bad), /does not match/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('after a reboot the buffer holds two boots: the last block wins', () => {
  const start = plain.indexOf('<14>');
  const end = plain.indexOf('-----END SSH HOST KEY KEYS-----') + '-----END SSH HOST KEY KEYS-----'.length;
  const block = plain.slice(start, end);
  // An older boot with a different ed25519 key (and no fingerprints block) printed first.
  const other = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxOaS0fQfXeV0OAdNdnxU3nnmJFYMzKrRGV4Mzyh3dU root@old';
  const twice = `-----BEGIN SSH HOST KEY KEYS-----\n${other}\n-----END SSH HOST KEY KEYS-----\n[ 0.000000] Linux version ...\n${block}\n`;
  assert.equal(asLines(parseConsoleOutput(twice)!.keys), expected);
});

test('the cloud-init tag and kernel timestamps in front of the lines are tolerated', () => {
  const tagged = plain.replace(/<14>Dec {2}4 10:00:31 ec2: /g, '[   31.2] cloud-init[1019]: ');
  assert.equal(asLines(parseConsoleOutput(tagged)!.keys), expected);
});

test('a block with only a DSA key has nothing usable', () => {
  const dsa = '-----BEGIN SSH HOST KEY KEYS-----\nssh-dss AAAAB3NzaC1kc3MAAAABAQAAAAECAAAAAQMAAAABBA== root@x\n-----END SSH HOST KEY KEYS-----\n';
  assert.throws(() => parseConsoleOutput(dsa), /no usable key/);
});

test('a malformed key is reported, not guessed at', () => {
  const bad = '-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB root@x\n-----END SSH HOST KEY KEYS-----\n';
  assert.throws(() => parseConsoleOutput(bad), /malformed/);
});

test('known_hosts: one line per address and key', () => {
  const parsed = parseConsoleOutput(plain)!;
  const lines = knownHostsLines(['203.0.113.9', '10.240.0.5'], parsed.keys);
  assert.is(lines.length, 6);
  assert.ok(lines[0]!.startsWith('203.0.113.9 ecdsa-sha2-nistp256 AAAA'));
  assert.ok(lines[5]!.startsWith('10.240.0.5 ssh-rsa AAAA'));
});

test.run();
