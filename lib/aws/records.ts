/**
 * What 01-infra leaves in the workspace for the aws provider:
 *   - `infra/hosts.json` (DiscoveredHosts): each host's public IP and instance id; the inventory
 *     loader merges it, so 03-pki puts the real public addresses (the Elastic IP for the load
 *     balancer) in the certificates' SANs;
 *   - `infra/ssh.json` (SshTargets): public IP, port 22, the inventory's SSH user;
 *   - `ssh/known_hosts`: each host's keys under its public and its private IP;
 *   - `infra/aws.json`: this provider's own record (region, resource ids, the Elastic IP, the host
 *     keys read from each instance's console), so a re-run need not read the consoles again.
 */
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic, PUBLIC_MODE } from '../fsutil.ts';
import { DISCOVERED_HOSTS_FILE, type DiscoveredHosts } from '../inventory.ts';
import { KNOWN_HOSTS_FILE, SSH_TARGETS_FILE, type SshTargets } from '../infra/provider.ts';
import type { Logger } from '../log.ts';
import { knownHostsLines, type HostKey } from './consolekeys.ts';
import { sha256Fingerprint } from '../infra/sshkey.ts';

/** The aws provider's own record, relative to the workspace. */
export const AWS_RECORD_FILE = 'infra/aws.json';

/** One host as the provider last saw it. */
export interface HostRecord {
  instanceId: string;
  privateIp: string;
  publicIp?: string;
  /** `type base64` per host key, as read from this instance's console output. */
  hostKeys?: string[];
}

/** infra/aws.json. */
export interface AwsRecord {
  version: 1;
  cluster: string;
  region: string;
  vpcId?: string;
  subnetId?: string;
  securityGroupId?: string;
  keyName: string;
  elasticIp?: { allocationId: string; publicIp: string; host: string };
  hosts: Record<string, HostRecord>;
}

/** The previous run's record, or undefined (none, or unreadable: then the consoles are read again). */
export function readAwsRecord(dir: string): AwsRecord | undefined {
  const path = join(dir, AWS_RECORD_FILE);
  if (!existsSync(path)) return undefined;
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as AwsRecord;
    return r && r.version === 1 && typeof r.hosts === 'object' ? r : undefined;
  } catch {
    return undefined; // a damaged record only costs a re-read of the consoles
  }
}

/** Host keys as stored in aws.json: `type base64`. */
export function hostKeysToStrings(keys: readonly HostKey[]): string[] {
  return keys.map((k) => `${k.type} ${k.blob.toString('base64')}`);
}

/** The inverse of hostKeysToStrings. */
export function hostKeysFromStrings(lines: readonly string[]): HostKey[] {
  return lines.map((l) => {
    const [type, b64] = l.split(' ') as [string, string];
    const blob = Buffer.from(b64, 'base64');
    return { type, blob, fingerprint: sha256Fingerprint(blob) };
  });
}

/** Writes `data` unless the file already holds exactly that; says which. */
function writeIfChanged(path: string, data: string): { path: string; changed: boolean } {
  if (existsSync(path) && readFileSync(path, 'utf8') === data) return { path, changed: false };
  writeFileAtomic(path, data, PUBLIC_MODE);
  return { path, changed: true };
}

/** Writes aws.json, hosts.json and ssh.json; returns each path and whether it changed. */
export function writeHostRecords(dir: string, record: AwsRecord, sshUser: string): { path: string; changed: boolean }[] {
  const discovered: DiscoveredHosts = { hosts: {} };
  const targets: SshTargets = { hosts: {} };
  for (const [name, h] of Object.entries(record.hosts)) {
    discovered.hosts[name] = { ...(h.publicIp ? { publicIp: h.publicIp } : {}), instanceId: h.instanceId };
    if (h.publicIp) targets.hosts[name] = { address: h.publicIp, port: 22, user: sshUser };
  }
  const files: [string, unknown][] = [
    [AWS_RECORD_FILE, record],
    [DISCOVERED_HOSTS_FILE, discovered],
    [SSH_TARGETS_FILE, targets],
  ];
  return files.map(([rel, data]) => writeIfChanged(join(dir, rel), `${JSON.stringify(data, null, 2)}\n`));
}

/** Writes known_hosts from the record: every recorded key under the host's public and private IP. */
export function writeKnownHosts(dir: string, record: AwsRecord): { path: string; changed: boolean } {
  const lines: string[] = [];
  for (const h of Object.values(record.hosts)) {
    if (!h.hostKeys?.length) continue;
    const addresses = [h.publicIp, h.privateIp].filter((a): a is string => !!a);
    lines.push(...knownHostsLines(addresses, hostKeysFromStrings(h.hostKeys)));
  }
  return writeIfChanged(join(dir, KNOWN_HOSTS_FILE), lines.length ? `${lines.join('\n')}\n` : '');
}

/** After a destroy: the addresses and host keys describe machines that no longer exist. */
export function removeRecords(dir: string, log: Logger): void {
  for (const rel of [DISCOVERED_HOSTS_FILE, SSH_TARGETS_FILE, KNOWN_HOSTS_FILE, AWS_RECORD_FILE]) {
    const path = join(dir, rel);
    if (!existsSync(path)) continue;
    unlinkSync(path);
    log.info('workspace', `removed ${path}`);
  }
}
