/**
 * The certificate plan: a pure function from the inventory to the table of shared/MISSION.md §2
 * (every CA and leaf with CN, O, usages, SANs and signer) plus where each file goes (§3).
 * Rendering, signing, verifying, the manifest and 05-distribute all read this one table.
 */
import type { Inventory, KeyAlgorithm, Host } from '../inventory.ts';
import type { Destination } from '../manifest.ts';

export type CaId = 'kubernetes-ca' | 'etcd-ca' | 'front-proxy-ca';
export type Usage = 'serverAuth' | 'clientAuth';
/** Which template and signing profile a row uses. */
export type Profile = 'ca' | 'client' | 'server' | 'server-client';

export interface CertRow {
  /** Directory under `<dir>/pki/` and manifest id prefix, e.g. "kube-apiserver", "kubelet-worker-0". */
  readonly id: string;
  readonly profile: Profile;
  readonly cn: string;
  readonly o: readonly string[];
  /** Extended key usages; empty for a CA. */
  readonly usages: readonly Usage[];
  readonly dnsNames: readonly string[];
  readonly ips: readonly string[];
  /** The CA that signs it; a CA names itself. */
  readonly signer: CaId;
  /** Who presents it to whom: the article's "full picture", one sentence. */
  readonly purpose: string;
  /** The inventory fields this row is computed from, for the headers of generated files. */
  readonly from: readonly string[];
  /** Where 05-distribute installs the certificate and the key. Empty: stays on the workstation. */
  readonly certTo: readonly Destination[];
  readonly keyTo: readonly Destination[];
}

export interface PkiPlan {
  readonly keyAlgorithm: KeyAlgorithm;
  readonly caValidityMs: number;
  readonly certValidityMs: number;
  readonly cas: readonly CertRow[];
  readonly leaves: readonly CertRow[];
  /** The service-account token signing pair: a bare key pair, no certificate. */
  readonly serviceAccount: { readonly keyTo: readonly Destination[]; readonly pubTo: readonly Destination[] };
}

/** Remote locations, following Kubernetes the Hard Way. */
export const REMOTE = {
  k8s: '/var/lib/kubernetes',
  etcd: '/etc/etcd',
  kubelet: '/var/lib/kubelet',
} as const;

const cert = (host: Host, path: string): Destination => ({ host: host.name, path, mode: '0644' });
const key = (host: Host, path: string): Destination => ({ host: host.name, path, mode: '0600' });
const onEach = (hosts: readonly Host[], f: (h: Host) => Destination[]): Destination[] => hosts.flatMap(f);

function unique(values: (string | undefined)[]): string[] {
  return [...new Set(values.filter((v): v is string => v !== undefined))];
}

/** Builds the plan. Pure: same inventory, same plan. */
export function planPki(inv: Inventory): PkiPlan {
  const { controllers, workers, loadBalancer: lb } = inv;
  const k8s = REMOTE.k8s;
  const ca = (id: CaId, purpose: string, certTo: Destination[], keyTo: Destination[]): CertRow => ({
    id, profile: 'ca', cn: id, o: [], usages: [], dnsNames: [], ips: [], signer: id, purpose, certTo, keyTo,
    from: ['pki.keyAlgorithm', 'pki.caValidity'],
  });
  const client = (id: string, cn: string, o: string[], signer: CaId, purpose: string, certTo: Destination[] = [], keyTo: Destination[] = []): CertRow => ({
    id, profile: 'client', cn, o, usages: ['clientAuth'], dnsNames: [], ips: [], signer, purpose, certTo, keyTo,
    from: ['pki.keyAlgorithm', 'pki.certValidity'],
  });

  const cas: CertRow[] = [
    ca('kubernetes-ca', 'Root of trust for everything around the API server. Its key stays on the controllers so kube-controller-manager can sign kubelet CSRs.',
      [...onEach(controllers, (h) => [cert(h, `${k8s}/ca.pem`)]), ...onEach(workers, (h) => [cert(h, `${k8s}/ca.pem`)])],
      onEach(controllers, (h) => [key(h, `${k8s}/ca-key.pem`)])),
    ca('etcd-ca', 'Root of trust for etcd only: a leaked kubernetes-ca still cannot reach etcd. Its key never leaves the workstation.',
      onEach(controllers, (h) => [cert(h, `${REMOTE.etcd}/ca.pem`), cert(h, `${k8s}/etcd-ca.pem`)]), []),
    ca('front-proxy-ca', 'Root of trust for the aggregation layer (extension API servers). Its key never leaves the workstation.',
      onEach(controllers, (h) => [cert(h, `${k8s}/front-proxy-ca.pem`)]), []),
  ];

  const apiserverIps = unique([
    inv.cluster.serviceIp,
    ...controllers.flatMap((c) => [c.privateIp, c.publicIp]),
    lb.privateIp,
    lb.publicIp,
    '127.0.0.1',
  ]);
  const domain = inv.cluster.domain;
  const apiserverNames = unique([
    ...controllers.map((c) => c.name),
    'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', `kubernetes.default.svc.${domain}`,
  ]);

  const leaves: CertRow[] = [
    {
      id: 'kube-apiserver', profile: 'server', cn: 'kube-apiserver', o: [], usages: ['serverAuth'],
      dnsNames: apiserverNames, ips: apiserverIps, signer: 'kubernetes-ca',
      purpose: 'kube-apiserver presents it to every client: kubectl, kubelets, controllers, pods through the kubernetes Service.',
      from: ['cluster.serviceCidr', 'cluster.domain', 'controllers[].name', 'controllers[].privateIp', 'controllers[].publicIp',
        'loadBalancer.privateIp', 'loadBalancer.publicIp', 'pki.keyAlgorithm', 'pki.certValidity'],
      certTo: onEach(controllers, (h) => [cert(h, `${k8s}/kube-apiserver.pem`)]),
      keyTo: onEach(controllers, (h) => [key(h, `${k8s}/kube-apiserver-key.pem`)]),
    },
    client('apiserver-kubelet-client', 'kube-apiserver-kubelet-client', ['system:masters'], 'kubernetes-ca',
      'kube-apiserver presents it to kubelets when it calls down for logs, exec and port-forward.',
      onEach(controllers, (h) => [cert(h, `${k8s}/apiserver-kubelet-client.pem`)]),
      onEach(controllers, (h) => [key(h, `${k8s}/apiserver-kubelet-client-key.pem`)])),
    ...workers.map((w, i): CertRow => ({
      id: `kubelet-${w.name}`, profile: 'server-client', cn: `system:node:${w.name}`, o: ['system:nodes'],
      usages: ['clientAuth', 'serverAuth'], dnsNames: [w.name], ips: unique([w.privateIp, w.publicIp]), signer: 'kubernetes-ca',
      purpose: `The kubelet on ${w.name} presents it to kube-apiserver (Node authorizer: this node only) and serves its own API with it.`,
      from: [`workers[${i}].name`, `workers[${i}].privateIp`, `workers[${i}].publicIp`, 'pki.keyAlgorithm', 'pki.certValidity'],
      certTo: [cert(w, `${REMOTE.kubelet}/kubelet.pem`)],
      keyTo: [key(w, `${REMOTE.kubelet}/kubelet-key.pem`)],
    })),
    client('kube-controller-manager', 'system:kube-controller-manager', [], 'kubernetes-ca',
      'kube-controller-manager presents it to kube-apiserver (embedded in its kubeconfig).'),
    client('kube-scheduler', 'system:kube-scheduler', [], 'kubernetes-ca',
      'kube-scheduler presents it to kube-apiserver (embedded in its kubeconfig).'),
    client('kube-proxy', 'system:kube-proxy', [], 'kubernetes-ca',
      'kube-proxy on every worker presents it to kube-apiserver (embedded in its kubeconfig).'),
    client('admin', 'admin', ['system:masters'], 'kubernetes-ca',
      'You present it to kube-apiserver with kubectl; system:masters bypasses RBAC, so guard it (embedded in the admin kubeconfigs).'),
    ...controllers.map((c, i): CertRow => ({
      id: `etcd-server-${c.name}`, profile: 'server-client', cn: c.name, o: [], usages: ['serverAuth', 'clientAuth'],
      dnsNames: [c.name, 'localhost'], ips: unique([c.privateIp, '127.0.0.1']), signer: 'etcd-ca',
      purpose: `etcd on ${c.name} presents it to its clients (kube-apiserver, etcdctl).`,
      from: [`controllers[${i}].name`, `controllers[${i}].privateIp`, 'pki.keyAlgorithm', 'pki.certValidity'],
      certTo: [cert(c, `${REMOTE.etcd}/server.pem`)], keyTo: [key(c, `${REMOTE.etcd}/server-key.pem`)],
    })),
    ...controllers.map((c, i): CertRow => ({
      id: `etcd-peer-${c.name}`, profile: 'server-client', cn: c.name, o: [], usages: ['serverAuth', 'clientAuth'],
      dnsNames: [c.name], ips: [c.privateIp], signer: 'etcd-ca',
      purpose: `etcd on ${c.name} presents it to the other etcd members, both ways.`,
      from: [`controllers[${i}].name`, `controllers[${i}].privateIp`, 'pki.keyAlgorithm', 'pki.certValidity'],
      certTo: [cert(c, `${REMOTE.etcd}/peer.pem`)], keyTo: [key(c, `${REMOTE.etcd}/peer-key.pem`)],
    })),
    client('apiserver-etcd-client', 'kube-apiserver-etcd-client', [], 'etcd-ca',
      'kube-apiserver presents it to etcd to read and write cluster state.',
      onEach(controllers, (h) => [cert(h, `${k8s}/apiserver-etcd-client.pem`)]),
      onEach(controllers, (h) => [key(h, `${k8s}/apiserver-etcd-client-key.pem`)])),
    client('front-proxy-client', 'front-proxy-client', [], 'front-proxy-ca',
      'kube-apiserver presents it to extension API servers when it proxies a request to them.',
      onEach(controllers, (h) => [cert(h, `${k8s}/front-proxy-client.pem`)]),
      onEach(controllers, (h) => [key(h, `${k8s}/front-proxy-client-key.pem`)])),
  ];

  return {
    keyAlgorithm: inv.pki.keyAlgorithm,
    caValidityMs: inv.pki.caValidityMs,
    certValidityMs: inv.pki.certValidityMs,
    cas,
    leaves,
    serviceAccount: {
      keyTo: onEach(controllers, (h) => [key(h, `${k8s}/sa.key`)]),
      pubTo: onEach(controllers, (h) => [cert(h, `${k8s}/sa.pub`)]),
    },
  };
}

/** The row's SANs as one list, names first: the form openssl and the manifest print. */
export function sansOf(row: CertRow): string[] {
  return [...row.dnsNames.map((d) => `DNS:${d}`), ...row.ips.map((i) => `IP:${i}`)];
}
