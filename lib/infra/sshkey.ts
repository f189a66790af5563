/**
 * The SSH key every step logs in with: an ed25519 key made on this machine. The private key is
 * written once, in OpenSSH format (what `ssh -i` and node-ssh read), 0600, atomically, and never
 * printed. The lab puts the public half in its hosts' authorized keys; the aws provider imports it
 * as an EC2 key pair (ImportKeyPair).
 *
 * Also the SSH wire-format helpers the host-key parser shares: key blobs, SHA256/MD5 fingerprints.
 */
import { generateKeyPairSync, createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { writeFileAtomic, SECRET_MODE, PUBLIC_MODE } from '../fsutil.ts';
import { SSH_KEY_FILE } from './provider.ts';

/** A public key as OpenSSH writes it: `ssh-ed25519 AAAA... comment`. */
export interface PublicKey {
  type: string;
  blob: Buffer;
  comment: string;
  /** `SHA256:...` without padding, as `ssh-keygen -l` prints it. */
  fingerprint: string;
}

/** The local key pair: where it lives and its public half. */
export interface LocalKey {
  privateKeyPath: string;
  publicKeyPath: string;
  publicKey: PublicKey;
  /** The `.pub` line, as sent to ImportKeyPair. */
  publicKeyLine: string;
}

// ---- SSH wire format (RFC 4251 §5) ----

/** A length-prefixed SSH string. */
export function sshString(data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

/** Reads length-prefixed strings from `buf`; undefined when it runs out. */
export function readSshStrings(buf: Buffer, count: number): { parts: Buffer[]; length: number } | undefined {
  const parts: Buffer[] = [];
  let off = 0;
  for (let i = 0; i < count; i++) {
    if (off + 4 > buf.length) return undefined;
    const len = buf.readUInt32BE(off);
    if (len > 16_384 || off + 4 + len > buf.length) return undefined;
    parts.push(buf.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  return { parts, length: off };
}

/** `SHA256:<base64 without padding>`, OpenSSH's default fingerprint since 6.8. */
export function sha256Fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** `MD5:aa:bb:...`, the fingerprint older OpenSSH (and older cloud-init consoles) print. */
export function md5Fingerprint(blob: Buffer): string {
  return `MD5:${createHash('md5').update(blob).digest('hex').match(/../g)!.join(':')}`;
}

/** Parses `type base64 [comment]`; throws on anything else. */
export function parsePublicKeyLine(line: string): PublicKey {
  const m = /^\s*(\S+)\s+([A-Za-z0-9+/]+={0,2})(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) throw new Error('not an OpenSSH public key line');
  const blob = Buffer.from(m[2]!, 'base64');
  const parsed = readSshStrings(blob, 1);
  if (!parsed || parsed.parts[0]!.toString() !== m[1]) throw new Error(`the key data does not match its type ${m[1]}`);
  return { type: m[1]!, blob, comment: m[3] ?? '', fingerprint: sha256Fingerprint(blob) };
}

/** `type base64 [comment]`, the .pub and known_hosts form. */
export function publicKeyLine(key: Pick<PublicKey, 'type' | 'blob' | 'comment'>): string {
  return `${key.type} ${key.blob.toString('base64')}${key.comment ? ` ${key.comment}` : ''}`;
}

// ---- ed25519 in OpenSSH's private key format (PROTOCOL.key) ----

/** A fresh ed25519 key pair: the private key in OpenSSH format and the public key line. */
export function generateEd25519(comment: string): { privateKey: string; publicKey: PublicKey } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4);
  let secret = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad = (8 - (secret.length % 8)) % 8;
  secret = Buffer.concat([secret, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0'),
    sshString('none'),
    sshString('none'),
    sshString(''),
    Buffer.from([0, 0, 0, 1]),
    sshString(blob),
    sshString(secret),
  ]);
  const b64 = body.toString('base64').match(/.{1,70}/g)!.join('\n');
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: { type: 'ssh-ed25519', blob, comment, fingerprint: sha256Fingerprint(blob) },
  };
}

/** The public key stored in an OpenSSH private key's (unencrypted) header. */
export function publicKeyOfPrivate(pem: string): Buffer {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(pem);
  if (!m) throw new Error('not an OpenSSH private key (expected "-----BEGIN OPENSSH PRIVATE KEY-----")');
  const body = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  const magic = Buffer.from('openssh-key-v1\0');
  if (!body.subarray(0, magic.length).equals(magic)) throw new Error('not an openssh-key-v1 private key');
  const rest = body.subarray(magic.length);
  const head = readSshStrings(rest, 3);
  if (!head) throw new Error('truncated private key');
  const afterHead = rest.subarray(head.length);
  const keys = readSshStrings(afterHead.subarray(4), 1);
  if (!keys) throw new Error('truncated private key');
  return keys.parts[0]!;
}

/**
 * Loads `<dir>/ssh/id_ed25519` (+ `.pub`), or creates it when absent and `create` is set.
 * Returns undefined when it is absent and may not be created (dry run).
 */
export function loadOrCreateKey(dir: string, comment: string, create: boolean): { key: LocalKey; created: boolean } | undefined {
  const privateKeyPath = join(dir, SSH_KEY_FILE);
  const publicKeyPath = `${privateKeyPath}.pub`;
  if (existsSync(privateKeyPath)) {
    const fromPrivate = publicKeyOfPrivate(readFileSync(privateKeyPath, 'utf8'));
    const type = readSshStrings(fromPrivate, 1)?.parts[0]?.toString() ?? 'unknown';
    let publicKey: PublicKey;
    if (existsSync(publicKeyPath)) {
      publicKey = parsePublicKeyLine(readFileSync(publicKeyPath, 'utf8'));
      if (!publicKey.blob.equals(fromPrivate)) {
        throw new Error(`${publicKeyPath} does not belong to ${privateKeyPath}; remove the .pub file to have it rewritten from the private key`);
      }
    } else {
      publicKey = { type, blob: fromPrivate, comment, fingerprint: sha256Fingerprint(fromPrivate) };
      writeFileAtomic(publicKeyPath, `${publicKeyLine(publicKey)}\n`, PUBLIC_MODE);
    }
    return { key: { privateKeyPath, publicKeyPath, publicKey, publicKeyLine: publicKeyLine(publicKey) }, created: false };
  }
  if (!create) return undefined;
  mkdirSync(dirname(privateKeyPath), { recursive: true, mode: 0o700 });
  const made = generateEd25519(comment);
  writeFileAtomic(privateKeyPath, made.privateKey, SECRET_MODE);
  writeFileAtomic(publicKeyPath, `${publicKeyLine(made.publicKey)}\n`, PUBLIC_MODE);
  return { key: { privateKeyPath, publicKeyPath, publicKey: made.publicKey, publicKeyLine: publicKeyLine(made.publicKey) }, created: true };
}

/** Compares an EC2 KeyFingerprint (base64 SHA-256, padding or not) with a local `SHA256:` one. */
export function sameFingerprint(ec2Fingerprint: string | undefined, local: string): boolean {
  if (!ec2Fingerprint) return false;
  const norm = (f: string) => f.replace(/^SHA256:/, '').replace(/=+$/, '');
  return norm(ec2Fingerprint) === norm(local);
}
