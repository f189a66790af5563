/**
 * The inventory: the one input every step reads (shared/MISSION.md §1).
 *
 * `loadInventory` parses the JSON, refuses anything unexpected with an InputError that names the
 * field path, the value and what was expected, applies the documented defaults, and merges what
 * 01-infra discovered (public addresses) from the workspace. The result is immutable data.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from './errors.ts';
import { parseCidr, parseIp, cidrContains, cidrsOverlap, firstHost, isNetworkOrBroadcast, formatIp, type Cidr } from './cidr.ts';
import { parseDuration } from './duration.ts';

export type Provider = 'aws' | 'lab';
export type Role = 'controller' | 'worker' | 'loadbalancer';
export type PkiTool = 'cfssl' | 'openssl';
export type KeyAlgorithm = 'rsa-2048' | 'ecdsa-p256';
export type EncryptionProvider = 'secretbox' | 'aescbc' | 'aesgcm';

export const PROVIDERS: readonly Provider[] = ['aws', 'lab'];
export const PKI_TOOLS: readonly PkiTool[] = ['cfssl', 'openssl'];
export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ['rsa-2048', 'ecdsa-p256'];
export const ENCRYPTION_PROVIDERS: readonly EncryptionProvider[] = ['secretbox', 'aescbc', 'aesgcm'];

export interface Host {
  readonly name: string;
  readonly role: Role;
  readonly privateIp: string;
  /** Written in the inventory or discovered by 01-infra. */
  readonly publicIp?: string;
  /** Workers only: the pod range this node's kubelet hands out. */
  readonly podCidr?: string;
}

export interface AwsConfig {
  /** Unset: the AWS SDK's own chain decides (AWS_REGION, the profile's region). */
  readonly region?: string;
  readonly vpcCidr: string;
  readonly instanceType: string;
  readonly sshUser: string;
  /** Who may reach 22, 6443 and ICMP. Required for the aws provider; 0.0.0.0/0 only if written. */
  readonly operatorCidr?: string;
  /** Pin an AMI instead of looking up the newest Ubuntu LTS by owner 099720109477. */
  readonly ami?: string;
}

export interface LabConfig {
  /** The bridge subnet the lab hosts live on. */
  readonly cidr: string;
}

export interface PkiConfig {
  readonly tool: PkiTool;
  readonly keyAlgorithm: KeyAlgorithm;
  readonly caValidity: string;
  readonly certValidity: string;
  readonly caValidityMs: number;
  readonly certValidityMs: number;
}

export interface Inventory {
  /** The file this came from, for messages. */
  readonly source: string;
  readonly provider: Provider;
  readonly cluster: {
    readonly name: string;
    readonly domain: string;
    readonly serviceCidr: string;
    readonly podCidr: string;
    /** First host of serviceCidr: the ClusterIP of the `kubernetes` Service. Derived, never listed. */
    readonly serviceIp: string;
  };
  /** The subnet hosts live in: aws.vpcCidr or lab.cidr, by provider. */
  readonly networkCidr: string;
  readonly aws: AwsConfig;
  readonly lab: LabConfig;
  readonly pki: PkiConfig;
  readonly encryption: { readonly provider: EncryptionProvider };
  readonly ssh: { readonly user: string };
  readonly loadBalancer: Host;
  readonly controllers: readonly Host[];
  readonly workers: readonly Host[];
  /** Every host: load balancer, controllers, workers, in that order. */
  readonly hosts: readonly Host[];
}

/** What 01-infra records about each host, merged by the loader. Lives at `<dir>/infra/hosts.json`. */
export interface DiscoveredHosts {
  hosts: Record<string, { publicIp?: string; instanceId?: string }>;
}

export const DISCOVERED_HOSTS_FILE = join('infra', 'hosts.json');

const DEFAULTS = {
  cluster: { domain: 'cluster.local', serviceCidr: '10.32.0.0/24', podCidr: '10.200.0.0/16' },
  aws: { vpcCidr: '10.240.0.0/24', instanceType: 't3.small', sshUser: 'ubuntu' },
  lab: { cidr: '10.240.0.0/24' },
  pki: { tool: 'cfssl', keyAlgorithm: 'rsa-2048', caValidity: '87600h', certValidity: '8760h' },
  encryption: { provider: 'secretbox' },
} as const;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Reads fields of one JSON object, remembering which ones were used so leftovers are refused. */
class Fields {
  private readonly used = new Set<string>();
  constructor(
    private readonly file: string,
    readonly path: string,
    private readonly obj: Record<string, unknown>,
  ) {}

  /**
   * Wraps one JSON object whose fields are `known`. Unknown fields are refused first, so a typo
   * ("contollers") is reported as itself rather than as the field it hides being missing.
   */
  static of(file: string, path: string, value: unknown, known: readonly string[]): Fields {
    if (value === undefined) throw new InputError(`${file}: ${path}`, 'is required');
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new InputError(`${file}: ${path || '(top level)'}`, `expected an object, got ${describe(value)}`);
    }
    const f = new Fields(file, path, value as Record<string, unknown>);
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) {
        f.fail(key, `unknown field (expected one of: ${known.join(', ')}; see the inventory reference in README.md)`);
      }
    }
    return f;
  }

  at(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  fail(key: string, message: string): never {
    throw new InputError(`${this.file}: ${this.at(key)}`, message);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined;
  }

  raw(key: string): unknown {
    this.used.add(key);
    return this.obj[key];
  }

  string(key: string, fallback?: string): string {
    const v = this.raw(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      this.fail(key, 'is required');
    }
    if (typeof v !== 'string' || v === '') this.fail(key, `expected a non-empty string, got ${describe(v)}`);
    return v;
  }

  optionalString(key: string): string | undefined {
    return this.has(key) ? this.string(key) : (this.raw(key), undefined);
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const v = this.string(key, fallback);
    if (!(allowed as readonly string[]).includes(v)) {
      this.fail(key, `got "${v}", expected one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
    }
    return v as T;
  }

  object(key: string, known: readonly string[], required = false): Fields {
    const v = this.raw(key);
    if (v === undefined && !required) return Fields.of(this.file, this.at(key), {}, known);
    return Fields.of(this.file, this.at(key), v, known);
  }

  array(key: string): unknown[] {
    const v = this.raw(key);
    if (v === undefined) this.fail(key, 'is required');
    if (!Array.isArray(v)) this.fail(key, `expected an array, got ${describe(v)}`);
    return v;
  }

  ip(key: string, optional = false): string | undefined {
    if (optional && !this.has(key)) return (this.raw(key), undefined);
    const v = this.string(key);
    if (parseIp(v) === null) this.fail(key, `"${v}" is not a valid IPv4 address (expected dotted quad like 10.240.0.10)`);
    return v;
  }

  cidr(key: string, fallback?: string): { text: string; cidr: Cidr } {
    const v = this.string(key, fallback);
    const c = parseCidr(v);
    if (typeof c === 'string') this.fail(key, `"${v}" is not a valid CIDR: ${c}`);
    return { text: c.text, cidr: c };
  }

  duration(key: string, fallback: string): { text: string; ms: number } {
    const v = this.string(key, fallback);
    const ms = parseDuration(v);
    if (ms === null) this.fail(key, `"${v}" is not a duration (expected a positive Go-style duration like "8760h" or "90m")`);
    return { text: v, ms };
  }

  /** Asserts every field was read: a field listed as known but never validated is a bug here. */
  done(): void {
    for (const key of Object.keys(this.obj)) {
      if (!this.used.has(key)) throw new Error(`inventory loader bug: ${this.at(key)} is accepted but never read`);
    }
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `"${v}"`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** Reads, validates and normalizes an inventory file; merges discovered hosts from `workspace`. */
export function loadInventory(file: string, workspace?: string): Inventory {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(file, `cannot read the inventory (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(file, `not valid JSON: ${(e as Error).message}`);
  }
  const discovered = workspace ? readDiscovered(workspace) : undefined;
  return parseInventory(json, file, discovered);
}

function readDiscovered(workspace: string): DiscoveredHosts | undefined {
  const path = join(workspace, DISCOVERED_HOSTS_FILE);
  if (!existsSync(path)) return undefined;
  try {
    const d = JSON.parse(readFileSync(path, 'utf8')) as DiscoveredHosts;
    if (typeof d !== 'object' || d === null || typeof d.hosts !== 'object') throw new Error('no "hosts" object');
    return d;
  } catch (e) {
    throw new InputError(path, `cannot read what 01-infra recorded: ${(e as Error).message}`);
  }
}

/** Validates an already-parsed inventory document. Pure: no I/O. */
export function parseInventory(json: unknown, file = 'inventory', discovered?: DiscoveredHosts): Inventory {
  const top = Fields.of(file, '', json, ['provider', 'cluster', 'aws', 'lab', 'pki', 'encryption', 'loadBalancer', 'controllers', 'workers']);
  const provider = top.oneOf('provider', PROVIDERS);

  const c = top.object('cluster', ['name', 'domain', 'serviceCidr', 'podCidr'], true);
  const clusterName = c.string('name');
  if (!DNS1123_LABEL.test(clusterName) || clusterName.length > 63) {
    c.fail('name', `"${clusterName}" is not a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)`);
  }
  const domain = c.string('domain', DEFAULTS.cluster.domain);
  if (!DNS1123_SUBDOMAIN.test(domain)) c.fail('domain', `"${domain}" is not a DNS name like cluster.local`);
  const serviceCidr = c.cidr('serviceCidr', DEFAULTS.cluster.serviceCidr);
  const podCidr = c.cidr('podCidr', DEFAULTS.cluster.podCidr);
  if (serviceCidr.cidr.prefix > 30) c.fail('serviceCidr', `"${serviceCidr.text}" is too small for any Service (prefix must be /30 or shorter)`);
  c.done();

  const a = top.object('aws', ['region', 'vpcCidr', 'instanceType', 'sshUser', 'operatorCidr', 'ami']);
  const aws: AwsConfig = {
    region: a.optionalString('region'),
    vpcCidr: a.cidr('vpcCidr', DEFAULTS.aws.vpcCidr).text,
    instanceType: a.string('instanceType', DEFAULTS.aws.instanceType),
    sshUser: a.string('sshUser', DEFAULTS.aws.sshUser),
    operatorCidr: a.has('operatorCidr') ? a.cidr('operatorCidr').text : (a.raw('operatorCidr'), undefined),
    ami: a.optionalString('ami'),
  };
  if (aws.region !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(aws.region)) a.fail('region', `"${aws.region}" is not an AWS region name like us-west-2`);
  if (aws.ami !== undefined && !/^ami-[0-9a-f]{8,17}$/.test(aws.ami)) a.fail('ami', `"${aws.ami}" is not an AMI id (expected ami- and hex digits)`);
  if (provider === 'aws' && aws.operatorCidr === undefined) {
    a.fail('operatorCidr', 'is required for the aws provider: the CIDR allowed to reach SSH, 6443 and ICMP (write "0.0.0.0/0" explicitly to allow everyone)');
  }
  a.done();

  const l = top.object('lab', ['cidr']);
  const lab: LabConfig = { cidr: l.cidr('cidr', DEFAULTS.lab.cidr).text };
  l.done();

  const p = top.object('pki', ['tool', 'keyAlgorithm', 'caValidity', 'certValidity']);
  const caValidity = p.duration('caValidity', DEFAULTS.pki.caValidity);
  const certValidity = p.duration('certValidity', DEFAULTS.pki.certValidity);
  const pki: PkiConfig = {
    tool: p.oneOf('tool', PKI_TOOLS, DEFAULTS.pki.tool),
    keyAlgorithm: p.oneOf('keyAlgorithm', KEY_ALGORITHMS, DEFAULTS.pki.keyAlgorithm),
    caValidity: caValidity.text,
    certValidity: certValidity.text,
    caValidityMs: caValidity.ms,
    certValidityMs: certValidity.ms,
  };
  if (pki.certValidityMs > pki.caValidityMs) {
    p.fail('certValidity', `"${pki.certValidity}" is longer than caValidity "${pki.caValidity}": a certificate cannot outlive its CA`);
  }
  p.done();

  const e = top.object('encryption', ['provider']);
  const encryption = { provider: e.oneOf('provider', ENCRYPTION_PROVIDERS, DEFAULTS.encryption.provider) };
  e.done();

  const networkText = provider === 'aws' ? aws.vpcCidr : lab.cidr;
  const networkField = provider === 'aws' ? 'aws.vpcCidr' : 'lab.cidr';
  const network = parseCidr(networkText) as Cidr;

  const overlaps: [string, Cidr][] = [[networkField, network], ['cluster.serviceCidr', serviceCidr.cidr], ['cluster.podCidr', podCidr.cidr]];
  for (let i = 0; i < overlaps.length; i++) {
    for (let j = i + 1; j < overlaps.length; j++) {
      const [na, ca] = overlaps[i]!;
      const [nb, cb] = overlaps[j]!;
      if (cidrsOverlap(ca, cb)) {
        throw new InputError(`${file}: ${nb}`, `"${cb.text}" overlaps ${na} "${ca.text}"; the VPC, Service and pod ranges must be disjoint`);
      }
    }
  }

  const names = new Map<string, string>();
  const ips = new Map<string, string>();
  const host = (value: unknown, path: string, role: Role): Host => {
    const h = Fields.of(file, path, value, role === 'worker' ? ['name', 'privateIp', 'publicIp', 'podCidr'] : ['name', 'privateIp', 'publicIp']);
    const name = h.string('name');
    if (!DNS1123_LABEL.test(name) || name.length > 63) {
      h.fail('name', `"${name}" is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)`);
    }
    if (names.has(name)) h.fail('name', `"${name}" is already used by ${names.get(name)}`);
    names.set(name, h.at('name'));
    const privateIp = h.ip('privateIp')!;
    const n = parseIp(privateIp)!;
    if (!cidrContains(network, n) || isNetworkOrBroadcast(network, n)) {
      h.fail('privateIp', `"${privateIp}" is not a usable host address inside ${networkField} "${network.text}"`);
    }
    if (ips.has(privateIp)) h.fail('privateIp', `"${privateIp}" is already used by ${ips.get(privateIp)}`);
    ips.set(privateIp, h.at('privateIp'));
    let publicIp = h.ip('publicIp', true);
    const found = discovered?.hosts[name]?.publicIp;
    if (found !== undefined) {
      if (parseIp(found) === null) throw new InputError(DISCOVERED_HOSTS_FILE, `hosts.${name}.publicIp: "${found}" is not an IPv4 address`);
      if (publicIp !== undefined && publicIp !== found) {
        h.fail('publicIp', `"${publicIp}" differs from ${found}, which 01-infra found for this host; remove it from the inventory or fix it`);
      }
      publicIp = found;
    }
    let pod: string | undefined;
    if (role === 'worker') {
      pod = h.has('podCidr') ? h.cidr('podCidr').text : undefined;
    }
    h.done();
    return { name, role, privateIp, ...(publicIp ? { publicIp } : {}), ...(pod ? { podCidr: pod } : {}) };
  };

  const loadBalancer = host(top.raw('loadBalancer'), 'loadBalancer', 'loadbalancer');
  const controllers = top.array('controllers').map((v, i) => host(v, `controllers[${i}]`, 'controller'));
  if (controllers.length === 0) top.fail('controllers', 'needs at least one controller (etcd and the API server run there)');
  const rawWorkers = top.array('workers');
  const workers = rawWorkers.map((v, i) => host(v, `workers[${i}]`, 'worker'));
  top.done();

  // Worker pod ranges: inside cluster.podCidr and disjoint; default to the i-th /24 of it.
  const podRanges: Cidr[] = [];
  const finalWorkers = workers.map((w, i) => {
    const path = `${file}: workers[${i}].podCidr`;
    let text = w.podCidr;
    if (text === undefined) {
      if (podCidr.cidr.prefix > 24 || i >= 2 ** (24 - podCidr.cidr.prefix)) {
        throw new InputError(path, `is required: cluster.podCidr "${podCidr.text}" has no free /24 to assign by default`);
      }
      text = `${formatIp(podCidr.cidr.base + i * 256)}/24`;
    }
    const r = parseCidr(text) as Cidr;
    if (!(cidrContains(podCidr.cidr, r.base) && r.prefix >= podCidr.cidr.prefix)) {
      throw new InputError(path, `"${text}" is not inside cluster.podCidr "${podCidr.text}"`);
    }
    const clash = podRanges.findIndex((o) => cidrsOverlap(o, r));
    if (clash >= 0) throw new InputError(path, `"${text}" overlaps workers[${clash}].podCidr "${podRanges[clash]!.text}"`);
    podRanges.push(r);
    return { ...w, podCidr: r.text };
  });

  return {
    source: file,
    provider,
    cluster: { name: clusterName, domain, serviceCidr: serviceCidr.text, podCidr: podCidr.text, serviceIp: firstHost(serviceCidr.cidr) },
    networkCidr: network.text,
    aws,
    lab,
    pki,
    encryption,
    ssh: { user: provider === 'aws' ? aws.sshUser : 'root' },
    loadBalancer,
    controllers,
    workers: finalWorkers,
    hosts: [loadBalancer, ...controllers, ...finalWorkers],
  };
}
