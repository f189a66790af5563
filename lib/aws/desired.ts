/**
 * What the AWS side of the cluster should look like, computed from the inventory by pure
 * functions: names, tags, CIDRs, security group rules, the six instances and their client tokens.
 * The resource table (resources.ts) compares this with what EC2 reports and acts on the difference.
 */
import { createHash } from 'node:crypto';
import type { Inventory, Role } from '../inventory.ts';
import { InputError } from '../errors.ts';
import { parseCidr, parseIp, formatIp, cidrSize, type Cidr } from '../cidr.ts';

/** Tag keys every hardway resource carries; destroy removes exactly what has TAG_CLUSTER = name. */
export const TAG_CLUSTER = 'hardway:cluster';
/** What the resource is: `vpc`, `subnet`, ..., or the host's role for instances. */
export const TAG_ROLE = 'hardway:role';
/** The inventory host an instance (and its volume and interface) stands for. */
export const TAG_HOST = 'hardway:host';

/** What each kind of resource is called in logs, tags (`hardway:role`) and the table. */
export type ResourceRole =
  | 'key-pair'
  | 'vpc'
  | 'internet-gateway'
  | 'subnet'
  | 'route-table'
  | 'security-group'
  | 'elastic-ip'
  | Role;

/** An EC2 tag, as the SDK takes it. */
export interface Tag {
  Key: string;
  Value: string;
}

/** One ingress rule; `protocol` "-1" means all traffic (EC2 then ignores ports). */
export interface IngressRule {
  protocol: '-1' | 'tcp' | 'icmp';
  fromPort?: number;
  toPort?: number;
  cidr: string;
  description: string;
}

/** One machine the inventory asks for. */
export interface DesiredInstance {
  name: string;
  role: Role;
  privateIp: string;
  instanceType: string;
}

/** Everything the aws provider aims for, derived from the inventory alone. */
export interface Desired {
  cluster: string;
  region: string;
  vpcCidr: string;
  /** One subnet spanning the whole VPC range, as in the guide. */
  subnetCidr: string;
  keyName: string;
  securityGroupName: string;
  ingress: IngressRule[];
  instances: DesiredInstance[];
  /** The host that gets the Elastic IP. */
  loadBalancer: string;
  sshUser: string;
  /** Pinned by the inventory, else looked up. */
  ami?: string;
  rootVolumeGiB: number;
}

/** Root volume per instance: room for containerd images and etcd; AMIs default to 8 GiB. */
export const ROOT_VOLUME_GIB = 20;

/**
 * The desired state for `inv` in `region` (the inventory's aws.region, else the SDK chain's);
 * throws InputError when the inventory cannot work on AWS.
 */
export function desiredState(inv: Inventory, region = inv.aws.region ?? ''): Desired {
  const aws = inv.aws;
  if (!aws.operatorCidr) {
    throw new InputError(`${inv.source}: aws.operatorCidr`, 'is required for the aws provider: the CIDR allowed to reach SSH, 6443 and ICMP (write "0.0.0.0/0" explicitly to allow everyone)');
  }
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) {
    throw new InputError(`${inv.source}: aws.region`, `"${region}" is not an AWS region name like us-west-2`);
  }
  const vpc = parseCidr(aws.vpcCidr) as Cidr;
  if (vpc.prefix < 16 || vpc.prefix > 28) {
    throw new InputError(`${inv.source}: aws.vpcCidr`, `"${aws.vpcCidr}" cannot be a VPC: AWS allows prefixes from /16 to /28`);
  }
  for (const h of inv.hosts) {
    const reason = reservedByAws(vpc, h.privateIp);
    if (reason) throw new InputError(`${inv.source}: ${hostPath(inv, h.name)}.privateIp`, `"${h.privateIp}" is ${reason}; pick another address in ${vpc.text}`);
  }
  const rules: IngressRule[] = [
    { protocol: '-1', cidr: vpc.text, description: 'all traffic between cluster hosts' },
    { protocol: '-1', cidr: inv.cluster.podCidr, description: 'all traffic from pods' },
    { protocol: 'tcp', fromPort: 22, toPort: 22, cidr: aws.operatorCidr, description: 'SSH from the operator' },
    { protocol: 'tcp', fromPort: 6443, toPort: 6443, cidr: aws.operatorCidr, description: 'Kubernetes API from the operator' },
    { protocol: 'icmp', fromPort: -1, toPort: -1, cidr: aws.operatorCidr, description: 'ping from the operator' },
  ];
  return {
    cluster: inv.cluster.name,
    region,
    vpcCidr: vpc.text,
    subnetCidr: vpc.text,
    keyName: `${inv.cluster.name}-ssh`,
    securityGroupName: `${inv.cluster.name}-hosts`,
    ingress: dedupeRules(rules),
    instances: inv.hosts.map((h) => ({ name: h.name, role: h.role, privateIp: h.privateIp, instanceType: aws.instanceType })),
    loadBalancer: inv.loadBalancer.name,
    sshUser: inv.ssh.user,
    ...(aws.ami ? { ami: aws.ami } : {}),
    rootVolumeGiB: ROOT_VOLUME_GIB,
  };
}

function hostPath(inv: Inventory, name: string): string {
  if (inv.loadBalancer.name === name) return 'loadBalancer';
  const c = inv.controllers.findIndex((h) => h.name === name);
  if (c >= 0) return `controllers[${c}]`;
  return `workers[${inv.workers.findIndex((h) => h.name === name)}]`;
}

/** AWS keeps the first four addresses and the last one of every subnet for itself. */
export function reservedByAws(subnet: Cidr, ip: string): string | undefined {
  const n = parseIp(ip);
  if (n === null) return 'not an IPv4 address';
  const offset = n - subnet.base;
  if (offset >= 0 && offset < 4) return `reserved by AWS (the first four addresses of a subnet: ${formatIp(subnet.base)}-${formatIp(subnet.base + 3)})`;
  if (offset === cidrSize(subnet) - 1) return 'reserved by AWS (the last address of a subnet)';
  return undefined;
}

/** The same rule listed twice (pod and VPC CIDR equal, say) is authorized once. */
function dedupeRules(rules: IngressRule[]): IngressRule[] {
  const seen = new Set<string>();
  return rules.filter((r) => (seen.has(ruleKey(r)) ? false : (seen.add(ruleKey(r)), true)));
}

/** A comparable identity for a rule: protocol, ports (ignored for "-1") and CIDR. */
export function ruleKey(r: Pick<IngressRule, 'protocol' | 'fromPort' | 'toPort' | 'cidr'>): string {
  return r.protocol === '-1' ? `-1 ${r.cidr}` : `${r.protocol} ${r.fromPort ?? ''}-${r.toPort ?? ''} ${r.cidr}`;
}

/** `tcp 22 from 198.51.100.0/24`, for logs. */
export function describeRule(r: Pick<IngressRule, 'protocol' | 'fromPort' | 'toPort' | 'cidr'>): string {
  if (r.protocol === '-1') return `all traffic from ${r.cidr}`;
  if (r.protocol === 'icmp') return `ICMP from ${r.cidr}`;
  const ports = r.fromPort === r.toPort ? `${r.fromPort}` : `${r.fromPort}-${r.toPort}`;
  return `${r.protocol} ${ports} from ${r.cidr}`;
}

/** Tags for one resource: cluster, role, a console-friendly Name, and the host for instances. */
export function tagsFor(cluster: string, role: ResourceRole, host?: string): Tag[] {
  return [
    { Key: 'Name', Value: host ?? `${cluster}-${role}` },
    { Key: TAG_CLUSTER, Value: cluster },
    { Key: TAG_ROLE, Value: role },
    ...(host ? [{ Key: TAG_HOST, Value: host }] : []),
  ];
}

/** EC2 filters that select this cluster's resources of one role. */
export function clusterFilters(cluster: string, role?: ResourceRole | readonly ResourceRole[]): { Name: string; Values: string[] }[] {
  const roles = role === undefined ? [] : Array.isArray(role) ? role : [role as ResourceRole];
  return [{ Name: `tag:${TAG_CLUSTER}`, Values: [cluster] }, ...(roles.length ? [{ Name: `tag:${TAG_ROLE}`, Values: [...roles] }] : [])];
}

/** Reads one tag from an EC2 tag list. */
export function tagValue(tags: readonly { Key?: string; Value?: string }[] | undefined, key: string): string | undefined {
  return tags?.find((t) => t.Key === key)?.Value;
}

/**
 * RunInstances' idempotency token for one host. The SDK already sends one token per call (so its
 * own retries are safe); this one is stable across runs, so a run resumed right after a crash
 * gets the instance it launched back even while DescribeInstances does not list it yet (EC2 is
 * eventually consistent). It differs after a destroy (a new subnet), because EC2 remembers a token
 * for a while after its instance is terminated; `attempt` > 0 moves past such a token.
 * At most 64 ASCII characters.
 */
export function clientToken(subnetId: string, host: DesiredInstance, attempt = 0): string {
  const digest = createHash('sha256').update(`${subnetId}\n${host.name}\n${host.privateIp}\n${host.instanceType}`).digest('hex').slice(0, 32);
  return `hardway-${digest}${attempt ? `-${attempt}` : ''}`;
}

/** CreateRouteTable's token: one per VPC. */
export function routeTableToken(vpcId: string): string {
  return `hardway-rtb-${createHash('sha256').update(vpcId).digest('hex').slice(0, 32)}`;
}
