/**
 * SSH host keys from an instance's console output, so the first SSH connection is verified.
 *
 * On first boot cloud-init (its write-ssh-key-fingerprints helper) prints two blocks on the
 * serial console, which EC2 returns from GetConsoleOutput:
 *
 *   <14>Jan  6 15:27:31 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
 *   <14>Jan  6 15:27:31 ec2: 256 SHA256:BOyEUu...kQ root@ip-10-240-0-10 (ED25519)
 *   <14>Jan  6 15:27:31 ec2: -----END SSH HOST KEY FINGERPRINTS-----
 *   -----BEGIN SSH HOST KEY KEYS-----
 *   ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... root@ip-10-240-0-10
 *   -----END SSH HOST KEY KEYS-----
 *
 * known_hosts needs whole keys, so they come from the KEYS block; each is checked against the
 * FINGERPRINTS block when that has a line of the same type. The parser tolerates what real
 * consoles do: syslog or kernel-time prefixes, CRLF line ends, lines wrapped at the console width
 * (even in the middle of the base64), and several boots in one buffer (the last one wins).
 */
import { readSshStrings, sha256Fingerprint, md5Fingerprint } from '../infra/sshkey.ts';

/** One host key, whole, ready for known_hosts. */
export interface HostKey {
  /** `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`. */
  type: string;
  blob: Buffer;
  /** `SHA256:...` as `ssh-keygen -l` prints it. */
  fingerprint: string;
}

/** One line of the FINGERPRINTS block: `256 SHA256:... root@host (ED25519)`. */
export interface ConsoleFingerprint {
  bits: number;
  /** `SHA256:...` or `MD5:aa:bb:...`. */
  fingerprint: string;
  /** `ED25519`, `ECDSA`, `RSA`, `DSA`. */
  label: string;
}

/** Both blocks of one boot, as parsed. */
export interface ConsoleHostKeys {
  keys: HostKey[];
  fingerprints: ConsoleFingerprint[];
}

/** Key types and how many wire-format strings their public blob holds. */
const KEY_TYPES: Record<string, { strings: number; label: string }> = {
  'ssh-ed25519': { strings: 2, label: 'ED25519' },
  'ecdsa-sha2-nistp256': { strings: 3, label: 'ECDSA' },
  'ecdsa-sha2-nistp384': { strings: 3, label: 'ECDSA' },
  'ecdsa-sha2-nistp521': { strings: 3, label: 'ECDSA' },
  'ssh-rsa': { strings: 3, label: 'RSA' },
  'ssh-dss': { strings: 5, label: 'DSA' },
};

/** Types OpenSSH still accepts as host keys; ssh-dss is parsed (to skip it cleanly) but not kept. */
const USABLE = new Set(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa']);

const BEGIN_KEYS = '-----BEGIN SSH HOST KEY KEYS-----';
const END_KEYS = '-----END SSH HOST KEY KEYS-----';
const BEGIN_FP = '-----BEGIN SSH HOST KEY FINGERPRINTS-----';
const END_FP = '-----END SSH HOST KEY FINGERPRINTS-----';

/** `[  12.345678] `, `<14>Jan  6 15:27:31 `, `ec2: `, `cloud-init[1278]: ` in any combination. */
const PREFIX = /^(?:\[\s*\d+\.\d+\]\s*)?(?:<\d+>)?(?:[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d )?(?:(?:ec2|cloud-init)(?:\[\d+\])?: ?)?/;

function cleanLines(text: string): string[] {
  return text.split('\n').map((l) => l.replace(/\r$/, '').replace(PREFIX, ''));
}

/**
 * Finds the host keys in console output. Returns undefined while the KEYS block has not been
 * printed yet (or is cut off); throws when what is printed is inconsistent (a key whose
 * fingerprint differs from the FINGERPRINTS block, or a block with no usable key).
 */
export function parseConsoleOutput(text: string): ConsoleHostKeys | undefined {
  const lines = cleanLines(text);
  const begin = lastIndex(lines, (l) => l.trim() === BEGIN_KEYS);
  if (begin < 0) return undefined;
  const endRel = lines.slice(begin + 1).findIndex((l) => l.trim() === END_KEYS);
  if (endRel < 0) return undefined; // still being written, or cut off by the 64 KB window
  const keys = parseKeysBlock(lines.slice(begin + 1, begin + 1 + endRel));

  // The FINGERPRINTS block printed just before this KEYS block, if any.
  const before = lines.slice(0, begin);
  const fpEnd = lastIndex(before, (l) => l.trim() === END_FP);
  const fpBegin = fpEnd < 0 ? -1 : lastIndex(before.slice(0, fpEnd), (l) => l.trim() === BEGIN_FP);
  const fingerprints = fpBegin < 0 ? [] : parseFingerprints(before.slice(fpBegin + 1, fpEnd));

  for (const key of keys) {
    const label = KEY_TYPES[key.type]!.label;
    for (const fp of fingerprints.filter((f) => f.label === label)) {
      const mine = fp.fingerprint.startsWith('MD5:') ? md5Fingerprint(key.blob) : key.fingerprint;
      if (mine !== fp.fingerprint) {
        throw new Error(`the console's ${label} host key (${key.fingerprint}) does not match the fingerprint printed with it (${fp.fingerprint}); refusing to trust it`);
      }
    }
  }
  const usable = keys.filter((k) => USABLE.has(k.type));
  if (usable.length === 0) throw new Error('the console printed an SSH HOST KEY KEYS block with no usable key in it');
  return { keys: usable, fingerprints };
}

function lastIndex<T>(items: T[], pred: (t: T) => boolean): number {
  for (let i = items.length - 1; i >= 0; i--) if (pred(items[i]!)) return i;
  return -1;
}

/**
 * Groups the block's lines into entries (a new one starts at a known key type), then reads each
 * blob by its own wire-format lengths, so a line wrapped mid-base64 or a comment glued onto the
 * key by wrapping cannot change which bytes are taken.
 */
function parseKeysBlock(lines: string[]): HostKey[] {
  const entries: string[] = [];
  for (const line of lines) {
    const first = line.trimStart().split(/\s/, 1)[0]!;
    if (KEY_TYPES[first] && /\s/.test(line.trimStart().slice(first.length, first.length + 1))) entries.push(line.trim());
    else if (entries.length > 0) entries[entries.length - 1] += line.trim();
  }
  const keys: HostKey[] = [];
  for (const entry of entries) {
    const [type] = entry.split(/\s/, 1) as [string];
    const spec = KEY_TYPES[type]!;
    const b64 = /^[A-Za-z0-9+/=]*/.exec(entry.slice(type.length).trimStart())![0];
    const decoded = Buffer.from(b64.replace(/=.*$/, ''), 'base64');
    const wire = readSshStrings(decoded, spec.strings);
    if (!wire || wire.parts[0]!.toString() !== type) {
      throw new Error(`the console's ${type} host key is malformed (its data does not parse as a ${type} key)`);
    }
    if (type === 'ssh-ed25519' && wire.parts[1]!.length !== 32) throw new Error('the console\'s ssh-ed25519 host key has the wrong length');
    const blob = Buffer.from(decoded.subarray(0, wire.length));
    if (!keys.some((k) => k.blob.equals(blob))) keys.push({ type, blob, fingerprint: sha256Fingerprint(blob) });
  }
  return keys;
}

const FP_LINE = /(\d+)\s+(SHA256:[A-Za-z0-9+/]{43}|(?:MD5:)?(?:[0-9a-f]{2}:){15}[0-9a-f]{2})\s.*?\(([A-Z0-9-]+)\)/g;

function parseFingerprints(lines: string[]): ConsoleFingerprint[] {
  const text = lines.map((l) => l.trim()).join(' ');
  return [...text.matchAll(FP_LINE)].map((m) => ({
    bits: Number(m[1]),
    fingerprint: m[2]!.startsWith('SHA256:') || m[2]!.startsWith('MD5:') ? m[2]! : `MD5:${m[2]}`,
    label: m[3]!,
  }));
}

/**
 * known_hosts lines: one per address per key (`10.240.0.10 ssh-ed25519 AAAA...`), the plainest
 * form every OpenSSH version and SSH library reads.
 */
export function knownHostsLines(addresses: readonly string[], keys: readonly HostKey[]): string[] {
  const lines: string[] = [];
  for (const address of addresses) for (const k of keys) lines.push(`${address} ${k.type} ${k.blob.toString('base64')}`);
  return lines;
}
