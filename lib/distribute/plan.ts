/**
 * The distribution plan: a pure function from the manifest (what 03-pki and 04-kubeconfig made,
 * and where each file goes) and the inventory to one list per host of the files it receives,
 * the directories that hold them, which installed CA each certificate is verified against and
 * which key belongs to which certificate. MISSION.md §3 is the contract; the manifest carries
 * the map, and this plan refuses a map that breaks the contract's rules (a key on the wrong
 * host, an etcd-ca key leaving the workstation, a path outside the managed directories) before
 * anything is sent.
 */
import { posix } from 'node:path';
import type { Inventory, Host } from '../inventory.ts';
import type { Manifest, ManifestEntry, EntryKind } from '../manifest.ts';

/**
 * The directories 05-distribute manages, as Kubernetes the Hard Way names them. Every file of
 * the map lands directly in one of them; every host's copy of them is scanned for stray keys.
 */
export const MANAGED_DIRS = ['/var/lib/kubernetes', '/etc/etcd', '/var/lib/kubelet', '/var/lib/kube-proxy'] as const;

/** A directory that receives a private key (or a file embedding one) is 0700; any other 0755. */
export const DIR_MODE_SECRET = '0700';
export const DIR_MODE_PUBLIC = '0755';

/** Characters a remote path may have: it is written into shell scripts (quoted, but still). */
const SAFE_PATH = /^\/[A-Za-z0-9._/-]+$/;

/** The ids 03-pki gives the certificates made for one host (lib/pki/plan.ts): kubelet-<worker>, etcd-server-<controller>, etcd-peer-<controller>. */
const PER_HOST_ID = /^(kubelet|etcd-server|etcd-peer)-(.+)$/;

/** The kinds that are (or hold) a private key. */
const KEY_KINDS: readonly EntryKind[] = ['key', 'ca-key', 'sa-key'];
/** The kinds `openssl verify` checks on the host. */
const CERT_KINDS: readonly EntryKind[] = ['cert', 'ca-cert'];

export interface PlannedFile {
  /** Manifest id, e.g. "kube-apiserver/key". */
  id: string;
  kind: EntryKind;
  /** In the workspace, relative to it. */
  local: string;
  /** Absolute path on the host. */
  path: string;
  mode: '0600' | '0644';
  sha256: string;
  secret: boolean;
  /** Certificates only: the path on this host of the CA certificate it must verify against. */
  verifyWith?: string;
}

export interface PlannedDir {
  path: string;
  mode: typeof DIR_MODE_SECRET | typeof DIR_MODE_PUBLIC;
}

/** A private key and the certificate (or bare public key) it must match, both on the host. */
export interface KeyPair {
  key: string;
  cert: string;
  /** `x509`: a certificate; `public-key`: a PEM public key (sa.pub). */
  certKind: 'x509' | 'public-key';
}

export interface HostPlan {
  host: Host;
  /** In a stable order: by remote path. */
  files: PlannedFile[];
  /** The managed directories this host receives files in. */
  dirs: PlannedDir[];
  pairs: KeyPair[];
}

export interface DistributionPlan {
  /** One per inventory host, in inventory order (the load balancer too: it receives nothing, and is checked for stray keys). */
  hosts: HostPlan[];
  /** Every workspace file some host receives, with the SHA-256 the manifest records. */
  sources: { local: string; sha256: string; ids: string[] }[];
}

/** The manifest contradicts the inventory or the rules of MISSION.md §3; every problem found, as sentences. */
export class PlanError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'PlanError';
  }
}

/** The part of an entry id before its last "/": "kube-apiserver" for "kube-apiserver/key". */
function groupOf(id: string): string {
  const at = id.lastIndexOf('/');
  return at < 0 ? id : id.slice(0, at);
}

/**
 * Builds the plan. Pure. Throws PlanError listing every problem: a destination host the
 * inventory does not have, a path outside MANAGED_DIRS, a secret that is not 0600, a CA key
 * other than kubernetes-ca's (or on a non-controller), a host's own key sent to another host,
 * anything for the load balancer, two files for one path, a controller or worker with nothing.
 */
export function planDistribution(manifest: Manifest, inv: Inventory): DistributionPlan {
  const problems: string[] = [];
  const rerun = 're-run 03-pki and 04-kubeconfig';
  if (manifest.cluster !== inv.cluster.name) {
    problems.push(`the manifest is for cluster "${manifest.cluster}", the inventory for "${inv.cluster.name}": ${rerun} for this inventory`);
  }
  if (!manifest.entries.some((e) => e.kind === 'kubeconfig')) problems.push('the manifest has no kubeconfigs: run 04-kubeconfig first');

  const byHost = new Map<string, Host>(inv.hosts.map((h) => [h.name, h]));
  const files = new Map<string, PlannedFile[]>(inv.hosts.map((h) => [h.name, []]));
  const sources = new Map<string, { local: string; sha256: string; ids: string[] }>();
  const caByCn = new Map<string, ManifestEntry>();
  for (const e of manifest.entries) if (e.kind === 'ca-cert' && e.certificate) caByCn.set(e.certificate.cn, e);

  for (const e of manifest.entries) {
    if (e.destinations.length === 0) continue;
    const src = sources.get(e.path);
    if (src && src.sha256 !== e.sha256) problems.push(`${e.id}: ${e.path} is listed twice with different SHA-256`);
    if (src) src.ids.push(e.id);
    else sources.set(e.path, { local: e.path, sha256: e.sha256, ids: [e.id] });

    if (e.kind === 'ca-key' && e.id !== 'kubernetes-ca/key') {
      problems.push(`${e.id}: a CA key other than kubernetes-ca's never leaves the workstation, but the manifest sends it to ${e.destinations.map((d) => d.host).join(', ')}`);
    }
    // A key made for one host (kubelet-worker-0, etcd-peer-controller-1, ...) goes to that host only.
    const ownerName = KEY_KINDS.includes(e.kind) ? PER_HOST_ID.exec(groupOf(e.id))?.[2] : undefined;
    const owner = ownerName ? byHost.get(ownerName) : undefined;

    for (const d of e.destinations) {
      const host = byHost.get(d.host);
      const where = `${e.id} -> ${d.host}:${d.path}`;
      if (!host) {
        problems.push(`${where}: ${d.host} is not in the inventory (${rerun})`);
        continue;
      }
      if (host.role === 'loadbalancer') problems.push(`${where}: the load balancer receives nothing from the PKI`);
      if (e.kind === 'ca-key' && host.role !== 'controller') problems.push(`${where}: a CA key goes to controllers only`);
      if (owner && owner.name !== host.name) problems.push(`${where}: ${owner.name}'s private key may not go to another host`);
      if (!SAFE_PATH.test(d.path) || posix.normalize(d.path) !== d.path) problems.push(`${where}: not a plain absolute path`);
      else if (!(MANAGED_DIRS as readonly string[]).includes(posix.dirname(d.path))) {
        problems.push(`${where}: outside the managed directories (${MANAGED_DIRS.join(', ')})`);
      }
      if (d.mode !== '0600' && d.mode !== '0644') problems.push(`${where}: mode "${String(d.mode)}" is neither 0600 nor 0644`);
      if ((e.secret || KEY_KINDS.includes(e.kind)) && d.mode !== '0600') problems.push(`${where}: a secret must be 0600, not ${d.mode}`);
      files.get(d.host)!.push({ id: e.id, kind: e.kind, local: e.path, path: d.path, mode: d.mode, sha256: e.sha256, secret: e.secret });
    }
  }

  const hosts: HostPlan[] = [];
  for (const host of inv.hosts) {
    const list = files.get(host.name)!.sort((a, b) => a.path.localeCompare(b.path));
    if (host.role !== 'loadbalancer' && list.length === 0) problems.push(`the manifest has nothing for ${host.name}: ${rerun} (the inventory changed since)`);
    const seen = new Map<string, string>();
    for (const f of list) {
      const other = seen.get(f.path);
      if (other) problems.push(`${host.name}:${f.path} would receive both ${other} and ${f.id}`);
      seen.set(f.path, f.id);
    }
    // Each certificate is verified against the copy of its CA on this host, the one in its own
    // directory when there are several (etcd certs in /etc/etcd against /etc/etcd/ca.pem).
    for (const f of list) {
      if (!CERT_KINDS.includes(f.kind)) continue;
      const entry = manifest.entries.find((e) => e.id === f.id)!;
      const signer = entry.certificate?.signer;
      const ca = signer ? caByCn.get(signer) : undefined;
      if (!ca) {
        problems.push(`${f.id}: the manifest does not say which CA signed it (${rerun})`);
        continue;
      }
      const copies = list.filter((x) => x.id === ca.id);
      const pick = copies.find((x) => posix.dirname(x.path) === posix.dirname(f.path)) ?? copies[0];
      if (!pick) problems.push(`${host.name}:${f.path}: ${host.name} receives ${f.id} but not its CA ${ca.id}, so it cannot be verified there`);
      else f.verifyWith = pick.path;
    }
    const pairs: KeyPair[] = [];
    for (const k of list.filter((f) => KEY_KINDS.includes(f.kind))) {
      const partner = list.find((f) => groupOf(f.id) === groupOf(k.id) && (CERT_KINDS.includes(f.kind) || f.kind === 'sa-pub'));
      if (partner) pairs.push({ key: k.path, cert: partner.path, certKind: partner.kind === 'sa-pub' ? 'public-key' : 'x509' });
    }
    const dirs: PlannedDir[] = MANAGED_DIRS.filter((d) => list.some((f) => posix.dirname(f.path) === d)).map((d) => ({
      path: d,
      mode: list.some((f) => posix.dirname(f.path) === d && f.mode === '0600') ? DIR_MODE_SECRET : DIR_MODE_PUBLIC,
    }));
    hosts.push({ host, files: list, dirs, pairs });
  }
  if (problems.length > 0) throw new PlanError(problems);
  return { hosts, sources: [...sources.values()] };
}

/** `controller-0: 22 files in /var/lib/kubernetes (0700), /etc/etcd (0700)`: one line per host. */
export function describeHostPlan(p: HostPlan): string {
  if (p.files.length === 0) return 'nothing to install (checked for stray private keys only)';
  const secrets = p.files.filter((f) => f.mode === '0600').length;
  return `${p.files.length} files (${secrets} secret) in ${p.dirs.map((d) => `${d.path} (${d.mode})`).join(', ')}`;
}
