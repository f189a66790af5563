/**
 * The machinery of the resource table (resources.ts): what a row is, the session it works in, and
 * the helpers every row shares (tags, eventual consistency, deletes that wait out dependencies).
 * A row finds its resources by tag, lists the changes `up` makes (each a sentence and the call
 * that makes it), the DryRun probes `--check` runs, and the removals `destroy` makes.
 */
import type { Address, Image, Instance, InternetGateway, KeyPairInfo, ResourceType, RouteTable, SecurityGroup, Subnet, Vpc } from '@aws-sdk/client-ec2';
import type { Logger } from '../log.ts';
import type { Ec2 } from './ec2.ts';
import { isAwsCode, formatMs } from './ec2.ts';
import { tagsFor, type Desired, type ResourceRole } from './desired.ts';
import type { LocalKey } from '../infra/sshkey.ts';
import { retryWhile, type Timings } from './wait.ts';

/** What the provider knows while it works: the client, the goal, and what EC2 reported. */
export interface Session {
  readonly ec2: Ec2;
  readonly desired: Desired;
  readonly log: Logger;
  readonly timings: Timings;
  readonly mode: 'up' | 'destroy' | 'check';
  /** The local SSH key; absent only in a dry run before it was ever made. */
  key?: LocalKey;
  /** Where the local key lives (or will), for messages. */
  keyPath: string;
  readonly found: Found;
}

/** This cluster's resources as EC2 reported them (lists, because a bug or a race could make two). */
export interface Found {
  keyPairs: KeyPairInfo[];
  vpcs: Vpc[];
  vpcDns?: { support: boolean; hostnames: boolean };
  internetGateways: InternetGateway[];
  subnets: Subnet[];
  routeTables: RouteTable[];
  securityGroups: SecurityGroup[];
  image?: Image;
  architecture?: string;
  availabilityZone?: string;
  instances: Instance[];
  addresses: Address[];
}

/** Nothing found yet. */
export function emptyFound(): Found {
  return { keyPairs: [], vpcs: [], internetGateways: [], subnets: [], routeTables: [], securityGroups: [], instances: [], addresses: [] };
}

/** One line of the plan: either a note about what already is, or a change and how to make it. */
export type Step =
  | { subject: string; note: string; warn?: boolean }
  | { subject: string; plan: string; run: () => Promise<string> };

/** One EC2 call made with DryRun, to prove a permission in --check. */
export interface Probe {
  action: string;
  /** The resource this is for, for the report. */
  subject: string;
  call: () => Promise<unknown>;
}

/** One kind of resource in the table. */
export interface Row {
  readonly role: string;
  /** Looks up this row's resources by the cluster's tags. Reads only. */
  find(s: Session): Promise<void>;
  /** The changes `up` makes, in order (notes for what is already right). */
  changes(s: Session): Step[];
  /** The DryRun calls that prove `up` and `destroy` may do what this row needs. */
  probes(s: Session): Probe[];
  /** The changes `destroy` makes, in order. */
  removals(s: Session): Step[];
}

/** Placeholder ids for DryRun probes of resources that do not exist yet. */
export const PLACEHOLDER = {
  vpc: 'vpc-0000000000000000a',
  subnet: 'subnet-0000000000000000a',
  igw: 'igw-0000000000000000a',
  rtb: 'rtb-0000000000000000a',
  rtbassoc: 'rtbassoc-0000000000000000a',
  sg: 'sg-0000000000000000a',
  instance: 'i-0000000000000000a',
  eipalloc: 'eipalloc-0000000000000000a',
  eipassoc: 'eipassoc-0000000000000000a',
  ami: 'ami-0000000000000000a',
};

/** The resource a row uses when a bug or a race made several. */
export const first = <T>(items: readonly T[]): T | undefined => items[0];

/** TagSpecifications for a create call: cluster, role, Name (and host). */
export function tagSpec(s: Session, type: ResourceType, role: ResourceRole, host?: string) {
  return [{ ResourceType: type, Tags: tagsFor(s.desired.cluster, role, host) }];
}

/** A warning when several resources carry the same tags. */
export function warnDuplicates(role: string, ids: (string | undefined)[]): Step[] {
  if (ids.length <= 1) return [];
  return [{ subject: role, warn: true, note: `${ids.length} carry this cluster's tags (${ids.join(', ')}); using ${ids[0]}. --destroy removes them all` }];
}

/** Runs `fn`, retrying while EC2 does not show a resource it just created (eventual consistency). */
export function consistent<T>(s: Session, fn: () => Promise<T>): Promise<T> {
  return retryWhile(fn, (e) => isAwsCode(e, 'NotFound'), { intervalMs: Math.min(s.timings.pollMs, 2_000), timeoutMs: s.timings.consistencyTimeoutMs });
}

/** Deletes, treating "not found" as done and retrying DependencyViolation for a bounded while. */
export async function removeWithRetry(s: Session, subject: string, id: string, fn: () => Promise<unknown>): Promise<string> {
  try {
    await retryWhile(fn, (e) => isAwsCode(e, 'DependencyViolation'), {
      intervalMs: s.timings.pollMs,
      timeoutMs: s.timings.dependencyTimeoutMs,
      onRetry: () => s.log.info(subject, `${id} is still in use (DependencyViolation); retrying in ${formatMs(s.timings.pollMs)}`),
    });
  } catch (e) {
    if (isAwsCode(e, 'NotFound')) return `${id} was already gone`;
    if (isAwsCode(e, 'DependencyViolation')) {
      throw new Error(
        `${subject}: ${id} is still in use after ${formatMs(s.timings.dependencyTimeoutMs)} (${(e as Error).message}); ` +
          'something hardway did not create may depend on it (a load balancer, an endpoint, a network interface): remove that, then run --destroy again',
      );
    }
    throw e;
  }
  return `deleted ${id}`;
}

/** Applies (or, in a dry run, prints) a list of steps; returns what changed. */
export async function applySteps(s: Session, steps: readonly Step[], dryRun: boolean): Promise<string[]> {
  const changed: string[] = [];
  for (const step of steps) {
    if ('note' in step) {
      if (step.warn) s.log.warn(step.subject, step.note);
      else s.log.info(step.subject, step.note);
      continue;
    }
    if (dryRun) {
      s.log.info(step.subject, `would ${step.plan}`);
      changed.push(`${step.subject}: ${step.plan}`);
      continue;
    }
    const done = await step.run();
    s.log.info(step.subject, done);
    changed.push(`${step.subject}: ${done}`);
  }
  return changed;
}
