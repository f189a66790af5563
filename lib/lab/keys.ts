/**
 * The workspace's SSH files the lab writes: the login key (`<dir>/ssh/id_ed25519`) and the
 * known_hosts lines for the lab's hosts. Key generation is not lab-specific: the aws provider can
 * import `ensureLoginKey` as it is.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, chmodSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { exec } from '../exec.ts';
import type { Logger } from '../log.ts';
import { writeFileAtomic, SECRET_MODE, PUBLIC_MODE } from '../fsutil.ts';
import { SSH_KEY_FILE } from '../infra/provider.ts';
import { parseKnownHosts, hostsFieldMatches, formatKnownHostsLine, fingerprint, blobType } from '../ssh/known-hosts.ts';

/**
 * Loads the workspace's login key or, if absent, makes one with ssh-keygen (ed25519, OpenSSH
 * format, no passphrase) and moves it into place only when complete: the private key appears
 * last, already 0600. The private key is never printed. Returns the `.pub` line.
 */
export async function ensureLoginKey(dir: string, comment: string, log: Logger): Promise<{ publicKey: string; created: boolean }> {
  const key = join(dir, SSH_KEY_FILE);
  const pub = `${key}.pub`;
  const sshDir = dirname(key);
  mkdirSync(sshDir, { recursive: true, mode: 0o700 });
  chmodSync(sshDir, 0o700);
  if (existsSync(key)) {
    chmodSync(key, SECRET_MODE);
    if (!existsSync(pub)) {
      const r = await exec('ssh-keygen', ['-y', '-f', key], { subject: 'ssh' }, log);
      writeFileAtomic(pub, r.stdout.trim() + '\n', PUBLIC_MODE);
    }
    return { publicKey: readFileSync(pub, 'utf8').trim(), created: false };
  }
  const tmp = mkdtempSync(join(sshDir, '.keygen-'));
  try {
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', join(tmp, 'id')], { subject: 'ssh' }, log);
    chmodSync(join(tmp, 'id'), SECRET_MODE);
    renameSync(join(tmp, 'id.pub'), pub);
    renameSync(join(tmp, 'id'), key);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  log.info('ssh', `made the login key ${key} (ed25519, 0600; the hosts accept only this key)`);
  return { publicKey: readFileSync(pub, 'utf8').trim(), created: true };
}

export interface HostKeyRecord {
  name: string;
  address: string;
  /** Wire blob of the host's public key. */
  key: Buffer;
}

export interface KnownHostsMerge {
  text: string;
  added: string[];
  already: string[];
  /** Hosts whose recorded key differs from the one on the host's disk: left alone, reported. */
  conflicts: { name: string; recorded: string; onDisk: string }[];
}

/**
 * Adds a `<address>,<name> <type> <key> hardway-lab:<cluster>/<name>` line for each host that
 * known_hosts does not list yet. A host it lists with another key is not overwritten: that is a
 * changed host key, and only a person should decide to trust it.
 */
export function mergeKnownHosts(existing: string, hosts: readonly HostKeyRecord[], cluster: string): KnownHostsMerge {
  const entries = parseKnownHosts(existing);
  const lines: string[] = [];
  const result: KnownHostsMerge = { text: existing, added: [], already: [], conflicts: [] };
  for (const h of hosts) {
    const mine = entries.filter((e) => e.marker === undefined && (hostsFieldMatches(e.hosts, h.address) || hostsFieldMatches(e.hosts, h.name)));
    if (mine.some((e) => e.key.equals(h.key))) {
      result.already.push(h.name);
    } else if (mine.length > 0) {
      result.conflicts.push({
        name: h.name,
        recorded: mine.map((e) => `${e.keyType} ${fingerprint(e.key)} (line ${e.line})`).join(', '),
        onDisk: `${blobType(h.key)} ${fingerprint(h.key)}`,
      });
    } else {
      lines.push(formatKnownHostsLine([h.address, h.name], h.key, `hardway-lab:${cluster}/${h.name}`));
      result.added.push(h.name);
    }
  }
  if (lines.length > 0) {
    const base = existing === '' || existing.endsWith('\n') ? existing : `${existing}\n`;
    result.text = `${base}${lines.join('\n')}\n`;
  }
  return result;
}

/** Drops every known_hosts line that names one of `names` (addresses or host names). */
export function removeKnownHosts(existing: string, names: readonly string[]): { text: string; removed: number } {
  const keep: string[] = [];
  let removed = 0;
  const parsed = new Map(parseKnownHosts(existing).map((e) => [e.line, e]));
  existing.split('\n').forEach((line, i) => {
    const e = parsed.get(i + 1);
    if (e && names.some((n) => hostsFieldMatches(e.hosts, n))) removed++;
    else keep.push(line);
  });
  return { text: keep.join('\n'), removed };
}
