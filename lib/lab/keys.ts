/**
 * The workspace's SSH files the lab writes: the login key (`<dir>/ssh/id_ed25519`, made by
 * lib/infra/sshkey.ts as for the aws provider) and the known_hosts lines for the lab's hosts.
 */
import { mkdirSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import { loadOrCreateKey } from '../infra/sshkey.ts';
import { parseKnownHosts, hostsFieldMatches, formatKnownHostsLine, fingerprint, blobType } from '../ssh/known-hosts.ts';

/** Loads the workspace's login key or makes one (see lib/infra/sshkey.ts); returns the `.pub` line. */
export async function ensureLoginKey(dir: string, comment: string, log: Logger): Promise<{ publicKey: string; created: boolean }> {
  const sshDir = join(dir, 'ssh');
  mkdirSync(sshDir, { recursive: true, mode: 0o700 });
  chmodSync(sshDir, 0o700); // it may have existed with looser permissions
  const { key, created } = loadOrCreateKey(dir, comment, true)!;
  if (created) log.info('ssh', `made the login key ${key.privateKeyPath} (ed25519, 0600; the hosts accept only this key)`);
  return { publicKey: key.publicKeyLine, created };
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
