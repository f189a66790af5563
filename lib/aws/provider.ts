/**
 * 01-infra with `provider: "aws"`: the article's six machines on EC2 (MISSION.md §5).
 *
 *   up       walk the resource table (resources.ts): find by tag, create what is missing, fix
 *            what drifted; wait for "running"; record public IPs and instance ids; read each
 *            host's SSH keys from its console output into known_hosts.
 *   destroy  walk the table backwards: remove exactly what carries this cluster's tag.
 *   check    prove every call is permitted, with EC2's DryRun; change nothing.
 *
 * `--dry-run` prints what exists and what would be created or removed, and writes nothing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EC2ClientConfig } from '@aws-sdk/client-ec2';
import type { Context, StepResult } from '../runner.ts';
import type { InfraProvider } from '../infra/provider.ts';
import { SSH_KEY_FILE } from '../infra/provider.ts';
import { DISCOVERED_HOSTS_FILE, type DiscoveredHosts } from '../inventory.ts';
import { Ec2, ENDPOINT_ENV, regionFromSdkChain, type RetryOptions } from './ec2.ts';
import { desiredState } from './desired.ts';
import { ROWS, applySteps, emptyFound, instanceFor, refreshInstances, type Session } from './resources.ts';
import { preflight } from './check.ts';
import { readHostKeys } from './hostkeys.ts';
import { loadOrCreateKey } from '../infra/sshkey.ts';
import { AWS_RECORD_FILE, hostKeysToStrings, readAwsRecord, removeRecords, writeHostRecords, writeKnownHosts, type AwsRecord } from './records.ts';
import { DEFAULT_TIMINGS, type Timings } from './wait.ts';

/** Knobs for tests: faster waits, a loopback endpoint, static credentials. */
export interface AwsProviderOptions {
  timings?: Partial<Timings>;
  retry?: Partial<RetryOptions>;
  /** Defaults to $HARDWAY_EC2_ENDPOINT (for tests), else the SDK's regional endpoint. */
  endpoint?: string;
  clientConfig?: Partial<EC2ClientConfig>;
}

/** An aws provider with the given options. */
export function createAwsProvider(options: AwsProviderOptions = {}): InfraProvider {
  return {
    up: (ctx) => withSession(ctx, 'up', options, up),
    destroy: (ctx) => withSession(ctx, 'destroy', options, destroy),
    check: (ctx) => withSession(ctx, 'check', options, check),
  };
}

/** The provider 01-infra uses for `provider: "aws"`. */
export const awsProvider: InfraProvider = createAwsProvider();

async function withSession(
  ctx: Context,
  mode: Session['mode'],
  options: AwsProviderOptions,
  fn: (ctx: Context, s: Session) => Promise<StepResult>,
): Promise<StepResult> {
  const log = ctx.log;
  const region = ctx.inventory.aws.region ?? (await regionFromSdkChain(ctx.inventory.source));
  const desired = desiredState(ctx.inventory, region);
  if (ctx.inventory.aws.region) {
    for (const v of ['AWS_REGION', 'AWS_DEFAULT_REGION']) {
      const r = process.env[v];
      if (r && r !== desired.region) log.warn('aws', `${v}=${r} is ignored: the inventory's aws.region is ${desired.region}`);
    }
  }
  const ec2 = new Ec2({ region: desired.region, log, endpoint: options.endpoint, retry: options.retry, clientConfig: options.clientConfig });
  try {
    if (ec2.endpoint) log.warn('aws', `sending EC2 calls to ${ec2.endpoint} (${options.endpoint ? 'test setting' : `$${ENDPOINT_ENV}`}), not to AWS`);
    await ec2.ensureCredentials();
    const session: Session = {
      ec2,
      desired,
      log,
      timings: { ...DEFAULT_TIMINGS, ...options.timings },
      mode,
      keyPath: join(ctx.dir, SSH_KEY_FILE),
      found: emptyFound(),
    };
    return await fn(ctx, session);
  } finally {
    ec2.destroy();
  }
}

async function up(ctx: Context, s: Session): Promise<StepResult> {
  const { log } = s;
  log.info('aws', `${ctx.dryRun ? 'dry run, nothing is created or written: ' : ''}cluster ${s.desired.cluster} in ${s.desired.region}`);

  const loaded = loadOrCreateKey(ctx.dir, `hardway@${s.desired.cluster}`, !ctx.dryRun);
  if (loaded) {
    s.key = loaded.key;
    log.info('ssh-key', loaded.created ? `generated ${loaded.key.privateKeyPath} (ed25519, 0600; it never leaves this machine)` : `using ${loaded.key.privateKeyPath} (${loaded.key.publicKey.fingerprint})`);
  } else {
    log.info('ssh-key', `would generate ${s.keyPath} (ed25519, 0600)`);
  }

  const changes: string[] = [];
  try {
    for (const row of ROWS) {
      await row.find(s);
      changes.push(...(await applySteps(s, row.changes(s), ctx.dryRun)));
    }
  } catch (e) {
    if (ctx.dryRun || changes.length === 0) throw e;
    throw new Error(`${(e as Error).message} (what was created is kept; fix the cause and run 01-infra again to continue from here)`);
  }

  if (ctx.dryRun) {
    log.info('host-keys', "would read each host's SSH host keys from its console output");
    log.info('workspace', `would write ${DISCOVERED_HOSTS_FILE}, infra/ssh.json, ssh/known_hosts and ${AWS_RECORD_FILE}`);
    return { ok: true, provider: 'aws', dryRun: true, region: s.desired.region, changes };
  }

  await refreshInstances(s);
  const previous = readAwsRecord(ctx.dir);
  const record = buildRecord(s, previous);
  warnInventoryPublicIps(ctx, record);
  for (const w of writeHostRecords(ctx.dir, record, s.desired.sshUser)) log.info('workspace', w.changed ? `wrote ${w.path}` : `${w.path} is up to date`);

  const need = Object.entries(record.hosts)
    .filter(([, h]) => !h.hostKeys?.length)
    .map(([name, h]) => ({ name, instanceId: h.instanceId }));
  for (const [name, h] of Object.entries(record.hosts)) {
    if (h.hostKeys?.length) log.info(name, `host keys already recorded for ${h.instanceId}`);
  }
  const keys = await readHostKeys(s, need);
  for (const [name, k] of keys.keys) record.hosts[name]!.hostKeys = hostKeysToStrings(k);
  if (keys.keys.size > 0) writeHostRecords(ctx.dir, record, s.desired.sshUser);
  const known = writeKnownHosts(ctx.dir, record);
  const withKeys = `${Object.values(record.hosts).filter((h) => h.hostKeys?.length).length} of ${Object.keys(record.hosts).length} hosts`;
  log.info('workspace', known.changed ? `wrote ${known.path} (${withKeys})` : `${known.path} is up to date (${withKeys})`);

  const missing = [...keys.missing.keys()];
  if (missing.length) log.error('host-keys', `no verified host key for ${missing.join(', ')}; later steps will refuse to connect to them. Run 01-infra again once their consoles show the keys`);
  return {
    ok: missing.length === 0,
    provider: 'aws',
    region: s.desired.region,
    changes,
    elasticIp: record.elasticIp,
    hosts: Object.fromEntries(Object.entries(record.hosts).map(([n, h]) => [n, { instanceId: h.instanceId, privateIp: h.privateIp, publicIp: h.publicIp }])),
    missingHostKeys: missing,
  };
}

/** The record for the workspace: ids and addresses now, host keys carried over for unchanged instances. */
function buildRecord(s: Session, previous: AwsRecord | undefined): AwsRecord {
  const address = s.found.addresses[0];
  const hosts: Record<string, AwsRecord['hosts'][string]> = {};
  for (const h of s.desired.instances) {
    const inst = instanceFor(s, h.name);
    if (!inst?.InstanceId) continue;
    const isLb = h.name === s.desired.loadBalancer;
    const publicIp = isLb && address?.PublicIp && address.InstanceId === inst.InstanceId ? address.PublicIp : inst.PublicIpAddress;
    const before = previous?.hosts[h.name];
    hosts[h.name] = {
      instanceId: inst.InstanceId,
      privateIp: inst.PrivateIpAddress ?? h.privateIp,
      ...(publicIp ? { publicIp } : {}),
      ...(before?.instanceId === inst.InstanceId && before.hostKeys?.length ? { hostKeys: before.hostKeys } : {}),
    };
  }
  return {
    version: 1,
    cluster: s.desired.cluster,
    region: s.desired.region,
    vpcId: s.found.vpcs[0]?.VpcId,
    subnetId: s.found.subnets[0]?.SubnetId,
    securityGroupId: s.found.securityGroups[0]?.GroupId,
    keyName: s.desired.keyName,
    ...(address?.AllocationId && address.PublicIp ? { elasticIp: { allocationId: address.AllocationId, publicIp: address.PublicIp, host: s.desired.loadBalancer } } : {}),
    hosts,
  };
}

/**
 * A publicIp written in the inventory that AWS did not give the host would make the inventory
 * loader refuse every later step; say so now, while the cause is obvious.
 */
function warnInventoryPublicIps(ctx: Context, record: AwsRecord): void {
  let before: DiscoveredHosts | undefined;
  try {
    const path = join(ctx.dir, DISCOVERED_HOSTS_FILE);
    before = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as DiscoveredHosts) : undefined;
  } catch {
    before = undefined;
  }
  for (const h of ctx.inventory.hosts) {
    const actual = record.hosts[h.name]?.publicIp;
    if (h.publicIp && actual && h.publicIp !== actual && before?.hosts[h.name]?.publicIp !== h.publicIp) {
      ctx.log.warn(h.name, `the inventory sets publicIp ${h.publicIp} but AWS gave this host ${actual}; remove publicIp from the inventory (01-infra records it), or later steps will refuse the mismatch`);
    }
  }
}

async function destroy(ctx: Context, s: Session): Promise<StepResult> {
  const { log } = s;
  log.info('aws', `${ctx.dryRun ? 'dry run, nothing is removed: ' : ''}removing everything tagged hardway:cluster=${s.desired.cluster} in ${s.desired.region}`);
  const changes: string[] = [];
  for (const row of [...ROWS].reverse()) {
    await row.find(s);
    changes.push(...(await applySteps(s, row.removals(s), ctx.dryRun)));
    // Once the machines are gone, so are their addresses and host keys: even if a later delete
    // fails, no later step may use the records.
    if (row.role === 'instances' && !ctx.dryRun) removeRecords(ctx.dir, log);
  }
  if (changes.length === 0) log.info('aws', `nothing tagged hardway:cluster=${s.desired.cluster} exists in ${s.desired.region}`);
  if (!ctx.dryRun && existsSync(s.keyPath)) log.info('ssh-key', `kept ${s.keyPath}; the next run imports it again (delete it yourself if you are done)`);
  return { ok: true, provider: 'aws', dryRun: ctx.dryRun, region: s.desired.region, changes };
}

async function check(ctx: Context, s: Session): Promise<StepResult> {
  s.log.info('aws', `checking permissions for cluster ${s.desired.cluster} in ${s.desired.region} with DryRun calls`);
  // Use the local key if there is one, but never create it: --check writes nothing.
  s.key = loadOrCreateKey(ctx.dir, `hardway@${s.desired.cluster}`, false)?.key;
  const report = await preflight(s);
  return { ok: report.ok, provider: 'aws', region: s.desired.region, checks: report.results };
}
