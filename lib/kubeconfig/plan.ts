/**
 * The kubeconfig plan: one row per kubeconfig, computed from the inventory by a pure function.
 *
 * Like kubeadm's certificate list, the table is the single source of truth: rendering, the
 * re-run check, the manifest (which hosts receive what, MISSION.md §3) and the README all
 * follow it.
 */
import type { Inventory } from '../inventory.ts';
import type { Destination } from '../manifest.ts';

/** The port every kube-apiserver (and the load balancer in front of them) listens on. */
export const API_PORT = 6443;

/** The step's id; also the `step` of its manifest entries. */
export const STEP_ID = '04-kubeconfig';

export const KUBECONFIG_DIR = 'kubeconfigs';
export const ENCRYPTION_CONFIG_FILE = 'encryption/encryption-config.yaml';
/** Where the inputs of every written kubeconfig are recorded, so a re-run can say why it rewrites. */
export const INPUTS_FILE = 'kubeconfigs/inputs.json';

/** The CA that signs every client certificate a kubeconfig embeds (03-pki id). */
export const CLUSTER_CA_ID = 'kubernetes-ca';
/** The API server's serving certificate (03-pki id): every server address must be in its SANs. */
export const APISERVER_CERT_ID = 'kube-apiserver';

export interface KubeconfigPlan {
  /** e.g. "kube-proxy", "kubelet-worker-0"; also the file name without ".kubeconfig". */
  readonly name: string;
  /** Path in the workspace. */
  readonly path: string;
  /** The 03-pki id of the client certificate and key it embeds. */
  readonly certId: string;
  /** The user the API server sees: the certificate's CN. Checked against the real certificate. */
  readonly user: string;
  /** The certificate's O (group) the API server sees, when one is expected. */
  readonly group?: string;
  readonly server: string;
  /** Which inventory field the server address comes from, for the file's header and the logs. */
  readonly serverFrom: string;
  /** Who reads it, in a few words. */
  readonly readBy: string;
  readonly destinations: readonly Destination[];
  /** Where 05-distribute installs it, in words (for the file's header; independent of host count). */
  readonly installedAt: string;
  /** One sentence for the manifest. */
  readonly purpose: string;
}

export function apiServerUrl(host: string): string {
  return `https://${host}:${API_PORT}`;
}

/** The plan for `inv`, in a stable order: admin, admin-controller, kubelets, kube-proxy, controller-manager, scheduler. */
export function planKubeconfigs(inv: Inventory): KubeconfigPlan[] {
  const lb = inv.loadBalancer;
  const lbPrivate = apiServerUrl(lb.privateIp);
  const local = apiServerUrl('127.0.0.1');
  const onControllers = (path: string): Destination[] => inv.controllers.map((c) => ({ host: c.name, path, mode: '0600' }));
  const onWorkers = (path: string): Destination[] => inv.workers.map((w) => ({ host: w.name, path, mode: '0600' }));
  const row = (r: Omit<KubeconfigPlan, 'path'>): KubeconfigPlan => ({ ...r, path: `${KUBECONFIG_DIR}/${r.name}.kubeconfig` });

  return [
    row({
      name: 'admin',
      certId: 'admin',
      user: 'admin',
      group: 'system:masters',
      server: apiServerUrl(lb.publicIp ?? lb.privateIp),
      serverFrom: lb.publicIp ? 'loadBalancer.publicIp' : 'loadBalancer.privateIp (no public address known)',
      readBy: "kubectl on the operator's workstation",
      destinations: [],
      installedAt: 'nowhere: it stays on this workstation (export KUBECONFIG=<workspace>/kubeconfigs/admin.kubeconfig)',
      purpose: "Cluster-admin kubeconfig for kubectl on the operator's workstation, through the load balancer; never leaves the workstation.",
    }),
    row({
      name: 'admin-controller',
      certId: 'admin',
      user: 'admin',
      group: 'system:masters',
      server: local,
      serverFrom: 'fixed: the kube-apiserver on the same controller',
      readBy: 'kubectl on a controller (e.g. to apply RBAC before the load balancer works)',
      destinations: onControllers('/var/lib/kubernetes/admin.kubeconfig'),
      installedAt: '/var/lib/kubernetes/admin.kubeconfig on every controller',
      purpose: "Cluster-admin kubeconfig for kubectl on a controller, talking to that controller's own kube-apiserver at 127.0.0.1.",
    }),
    ...inv.workers.map((w) =>
      row({
        name: `kubelet-${w.name}`,
        certId: `kubelet-${w.name}`,
        user: `system:node:${w.name}`,
        group: 'system:nodes',
        server: lbPrivate,
        serverFrom: 'loadBalancer.privateIp',
        readBy: `the kubelet on ${w.name}`,
        destinations: [{ host: w.name, path: '/var/lib/kubelet/kubeconfig', mode: '0600' }],
        installedAt: `/var/lib/kubelet/kubeconfig on ${w.name} only`,
        purpose: `Kubelet kubeconfig for ${w.name}: authenticates as system:node:${w.name} so the Node authorizer limits it to its own node.`,
      }),
    ),
    row({
      name: 'kube-proxy',
      certId: 'kube-proxy',
      user: 'system:kube-proxy',
      server: lbPrivate,
      serverFrom: 'loadBalancer.privateIp',
      readBy: 'kube-proxy on every worker',
      destinations: onWorkers('/var/lib/kube-proxy/kubeconfig'),
      installedAt: '/var/lib/kube-proxy/kubeconfig on every worker',
      purpose: 'kube-proxy kubeconfig, the same on every worker: watches Services and EndpointSlices through the load balancer.',
    }),
    row({
      name: 'kube-controller-manager',
      certId: 'kube-controller-manager',
      user: 'system:kube-controller-manager',
      server: local,
      serverFrom: 'fixed: the kube-apiserver on the same controller',
      readBy: 'kube-controller-manager on every controller',
      destinations: onControllers('/var/lib/kubernetes/kube-controller-manager.kubeconfig'),
      installedAt: '/var/lib/kubernetes/kube-controller-manager.kubeconfig on every controller',
      purpose: "kube-controller-manager kubeconfig: talks to its own controller's kube-apiserver at 127.0.0.1.",
    }),
    row({
      name: 'kube-scheduler',
      certId: 'kube-scheduler',
      user: 'system:kube-scheduler',
      server: local,
      serverFrom: 'fixed: the kube-apiserver on the same controller',
      readBy: 'kube-scheduler on every controller',
      destinations: onControllers('/var/lib/kubernetes/kube-scheduler.kubeconfig'),
      installedAt: '/var/lib/kubernetes/kube-scheduler.kubeconfig on every controller',
      purpose: "kube-scheduler kubeconfig: talks to its own controller's kube-apiserver at 127.0.0.1.",
    }),
  ];
}

/** Where the encryption config goes: every controller, read by kube-apiserver. */
export function encryptionDestinations(inv: Inventory): Destination[] {
  return inv.controllers.map((c) => ({ host: c.name, path: '/var/lib/kubernetes/encryption-config.yaml', mode: '0600' }));
}
