// The local ed25519 key: OpenSSH format that ssh-keygen and ssh2 (node-ssh) read, 0600, made once.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, statSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateEd25519, loadOrCreateKey, publicKeyOfPrivate, parsePublicKeyLine, publicKeyLine, sameFingerprint } from '../lib/infra/sshkey.ts';

const require = createRequire(import.meta.url);

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'hardway-key-'));
}

test('the private key is OpenSSH format: ssh-keygen derives the same public key and fingerprint', () => {
  const dir = tmp();
  try {
    const { privateKey, publicKey } = generateEd25519('hardway@test');
    const path = join(dir, 'id');
    writeFileSync(path, privateKey, { mode: 0o600 });
    const derived = execFileSync('ssh-keygen', ['-y', '-f', path], { encoding: 'utf8' }).trim();
    assert.is(derived.split(' ').slice(0, 2).join(' '), publicKeyLine({ ...publicKey, comment: '' }));
    const listed = execFileSync('ssh-keygen', ['-l', '-f', path], { encoding: 'utf8' });
    assert.ok(listed.includes(publicKey.fingerprint), listed);
    assert.ok(listed.includes('hardway@test'), 'the comment is inside the private key');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ssh2 (what node-ssh uses) parses the private key', () => {
  const { privateKey, publicKey } = generateEd25519('c');
  const ssh2 = require('ssh2') as { utils: { parseKey(k: string): { type: string; getPublicSSH(): Buffer } | Error } };
  const parsed = ssh2.utils.parseKey(privateKey);
  assert.not.instance(parsed, Error);
  const key = parsed as { type: string; getPublicSSH(): Buffer };
  assert.is(key.type, 'ssh-ed25519');
  assert.ok(key.getPublicSSH().equals(publicKey.blob));
});

test('made once, 0600 in a 0700 directory; a second run keeps it', () => {
  const dir = tmp();
  try {
    const first = loadOrCreateKey(dir, 'hardway@x', true)!;
    assert.ok(first.created);
    assert.is(statSync(first.key.privateKeyPath).mode & 0o777, 0o600);
    assert.is(statSync(first.key.publicKeyPath).mode & 0o777, 0o644);
    assert.is(statSync(join(dir, 'ssh')).mode & 0o777, 0o700);
    const pem = readFileSync(first.key.privateKeyPath, 'utf8');
    const second = loadOrCreateKey(dir, 'hardway@x', true)!;
    assert.not.ok(second.created);
    assert.is(readFileSync(second.key.privateKeyPath, 'utf8'), pem);
    assert.is(second.key.publicKey.fingerprint, first.key.publicKey.fingerprint);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a dry run never creates the key', () => {
  const dir = tmp();
  try {
    assert.is(loadOrCreateKey(dir, 'c', false), undefined);
    assert.not.ok(existsSync(join(dir, 'ssh')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a key made by ssh-keygen is used as is; a missing .pub is rewritten from it', () => {
  const dir = tmp();
  try {
    execFileSync('mkdir', ['-p', join(dir, 'ssh')]);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'mine', '-f', join(dir, 'ssh', 'id_ed25519')]);
    const pub = readFileSync(join(dir, 'ssh', 'id_ed25519.pub'), 'utf8');
    rmSync(join(dir, 'ssh', 'id_ed25519.pub'));
    const got = loadOrCreateKey(dir, 'ignored', true)!;
    assert.not.ok(got.created);
    assert.is(readFileSync(got.key.publicKeyPath, 'utf8').split(' ')[1], pub.split(' ')[1]);
    assert.ok(publicKeyOfPrivate(readFileSync(got.key.privateKeyPath, 'utf8')).equals(parsePublicKeyLine(pub).blob));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a .pub that belongs to another key is refused', () => {
  const dir = tmp();
  try {
    const made = loadOrCreateKey(dir, 'c', true)!;
    writeFileSync(made.key.publicKeyPath, `${publicKeyLine(generateEd25519('other').publicKey)}\n`);
    assert.throws(() => loadOrCreateKey(dir, 'c', true), /does not belong to/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('EC2 key fingerprints compare with or without base64 padding', () => {
  const { publicKey } = generateEd25519('c');
  const bare = publicKey.fingerprint.slice('SHA256:'.length);
  assert.ok(sameFingerprint(`${bare}=`, publicKey.fingerprint));
  assert.ok(sameFingerprint(bare, publicKey.fingerprint));
  assert.not.ok(sameFingerprint(undefined, publicKey.fingerprint));
  assert.not.ok(sameFingerprint('AAAA', publicKey.fingerprint));
});

test.run();
