/**
 * OpenSSH `known_hosts`: parse, match and append, so that every connection the steps make is
 * verified against the workspace's file exactly as `ssh -o StrictHostKeyChecking=yes` would.
 *
 * Format (sshd(8), SSH_KNOWN_HOSTS FILE FORMAT): `[marker] hostnames keytype base64-key [comment]`.
 * `hostnames` is a comma-separated list of patterns (`*`, `?`, `!negation`), a non-standard port
 * is written `[host]:port`, and a hashed entry is `|1|base64(salt)|base64(HMAC-SHA1(salt, host))`
 * (one host per hashed entry). Markers: `@revoked` (never accept this key) and
 * `@cert-authority` (host certificates; not supported here, such lines never match).
 * The key blob is the SSH wire encoding, the same bytes ssh2's `hostVerifier` receives.
 */
import { createHash, createHmac } from 'node:crypto';

export interface KnownHostEntry {
  /** 1-based line number, for messages. */
  line: number;
  marker?: '@revoked' | '@cert-authority';
  /** The hostnames field as written. */
  hosts: string;
  keyType: string;
  /** The key as written (base64 of the wire blob). */
  keyBase64: string;
  key: Buffer;
}

/** Parses a known_hosts text; lines it cannot read are skipped, as OpenSSH does. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m !== '@revoked' && m !== '@cert-authority') return;
      marker = m;
    }
    const [hosts, keyType, keyBase64] = fields;
    if (!hosts || !keyType || !keyBase64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(keyBase64)) return;
    const key = Buffer.from(keyBase64, 'base64');
    if (blobType(key) !== keyType || !wellFormed(key)) return; // corrupt line: the blob names its own type
    entries.push({ line: i + 1, ...(marker ? { marker } : {}), hosts, keyType, keyBase64, key });
  });
  return entries;
}

/** The name known_hosts uses for a host: `addr` on port 22, `[addr]:port` otherwise. */
export function hostKeyName(address: string, port: number): string {
  return port === 22 ? address : `[${address}]:${port}`;
}

/** The key type a wire-format key blob names (its first SSH string), e.g. `ssh-ed25519`. */
export function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  if (n === 0 || n > 64 || blob.length < 4 + n) return undefined;
  return blob.subarray(4, 4 + n).toString('latin1');
}

/** A key blob is a sequence of length-prefixed fields (type, then key material), nothing left over. */
function wellFormed(blob: Buffer): boolean {
  let at = 0;
  let fields = 0;
  while (at < blob.length) {
    if (at + 4 > blob.length) return false;
    const n = blob.readUInt32BE(at);
    at += 4 + n;
    fields++;
  }
  return at === blob.length && fields >= 2;
}

/** OpenSSH's fingerprint: `SHA256:` and unpadded base64 of the blob's SHA-256. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

/** Whether the hostnames field `hosts` names `name` (already in `[addr]:port` form if needed). */
export function hostsFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return mac === hash;
  }
  let matched = false;
  for (const pattern of hosts.split(',')) {
    const negated = pattern.startsWith('!');
    const p = negated ? pattern.slice(1) : pattern;
    if (globToRegExp(p).test(name)) {
      if (negated) return false; // a matching negation wins, as in OpenSSH
      matched = true;
    }
  }
  return matched;
}

export type HostKeyVerdict =
  | { status: 'known'; entry: KnownHostEntry }
  | { status: 'unknown' }
  | { status: 'changed'; expected: KnownHostEntry[] }
  | { status: 'revoked'; entry: KnownHostEntry };

/**
 * Checks the key a server offered. `known`: a matching line has exactly this key. `changed`: the
 * file has keys for this name but none is this one (OpenSSH's "REMOTE HOST IDENTIFICATION HAS
 * CHANGED"; a key of another type counts too: we never trust a new key for a host we know).
 * `unknown`: the file has nothing for this name. `revoked`: an `@revoked` line lists this key.
 */
export function verifyHostKey(entries: readonly KnownHostEntry[], name: string, offered: Buffer): HostKeyVerdict {
  const revoked = entries.find((e) => e.marker === '@revoked' && e.key.equals(offered));
  if (revoked) return { status: 'revoked', entry: revoked };
  const forHost = entries.filter((e) => e.marker === undefined && hostsFieldMatches(e.hosts, name));
  const exact = forHost.find((e) => e.key.equals(offered));
  if (exact) return { status: 'known', entry: exact };
  if (forHost.length > 0) return { status: 'changed', expected: forHost };
  return { status: 'unknown' };
}

/** The key types known_hosts lists for `name` (to ask the server for one of those). */
export function knownKeyTypes(entries: readonly KnownHostEntry[], name: string): string[] {
  return [...new Set(entries.filter((e) => e.marker === undefined && hostsFieldMatches(e.hosts, name)).map((e) => e.keyType))];
}

/**
 * ssh2 host-key algorithm names for known key types, in ssh2's own preference order, so the
 * server presents a key we can check instead of one we have never seen.
 */
export function hostKeyAlgorithmsFor(keyTypes: readonly string[]): string[] {
  const order = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
  const wanted = new Set<string>();
  for (const t of keyTypes) {
    if (t === 'ssh-rsa') ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'].forEach((a) => wanted.add(a));
    else wanted.add(t);
  }
  return order.filter((a) => wanted.has(a));
}

/** One known_hosts line: `names keytype base64 [comment]`. */
export function formatKnownHostsLine(names: readonly string[], blob: Buffer, comment?: string): string {
  const type = blobType(blob);
  if (!type) throw new Error('not an SSH public key blob');
  return `${names.join(',')} ${type} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

/** Reads an OpenSSH `.pub` line (`type base64 comment`) into its blob. */
export function parsePublicKeyLine(text: string): Buffer {
  const [type, b64] = text.trim().split(/\s+/);
  if (!type || !b64) throw new Error('not an OpenSSH public key line');
  const blob = Buffer.from(b64, 'base64');
  if (blobType(blob) !== type) throw new Error(`public key line says ${type} but the key is ${blobType(blob) ?? 'unreadable'}`);
  return blob;
}
