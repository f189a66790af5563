/**
 * The lab's plan, as pure functions of the inventory: what every link, namespace and directory
 * is called, which address the machine takes on the lab bridge, whether the subnet collides with
 * a route the machine already has, and the text of each host's sshd_config and init script.
 */
import { createHash } from 'node:crypto';
import type { Inventory, Host } from '../inventory.ts';
import { parseCidr, parseIp, formatIp, cidrSize, cidrsOverlap, type Cidr } from '../cidr.ts';

/**
 * Where the lab keeps what belongs to the machine rather than to the workspace: each host's disk
 * (overlay upper and work directories), its console log and the pid record. Not inside the
 * workspace, /var or /home: an overlay's upper directory may not sit inside a directory it
 * overlays, and the workspace can be anywhere (often under /root or /home). /run also has the
 * right lifetime: the namespaces, links and processes of a lab do not survive a reboot either.
 */
export const LAB_ROOT = '/run/hardway-lab';

/** Directories each host gets as a private copy-on-write view (those that exist on the machine). */
export const OVERLAY_DIRS = ['etc', 'var', 'home', 'root', 'usr', 'opt', 'srv'] as const;

const IFNAMSIZ = 15;

function hash(text: string, n: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, n);
}

export interface LabHostPlan {
  host: Host;
  /** `ip netns` name: `hw-<cluster>-<host>`. */
  netns: string;
  /** The machine's end of the host's veth pair, on the bridge (the host's end is `eth0`). */
  veth: string;
  /** `<LAB_ROOT>/<cluster>/<host>`. */
  stateDir: string;
  /** In the holder's command line, so a pid is only ever taken for ours after checking it. */
  marker: string;
}

export interface LabPlan {
  cluster: string;
  cidr: Cidr;
  bridge: string;
  /** The machine's own address on the bridge, so it can reach the hosts (and only them). */
  bridgeAddress: string;
  /** `<LAB_ROOT>/<cluster>`. */
  root: string;
  hosts: LabHostPlan[];
}

/** Bridge name: `hw-<cluster>`, shortened with a hash when that passes the 15-byte ifname limit. */
export function bridgeName(cluster: string): string {
  const plain = `hw-${cluster}`;
  return plain.length <= IFNAMSIZ ? plain : `hw-${cluster.slice(0, 6)}-${hash(cluster, 5)}`;
}

/** The machine-side veth of a host: `hwv-` and a hash of cluster and host (ifnames are short). */
export function vethName(cluster: string, host: string): string {
  return `hwv-${hash(`${cluster}/${host}`, 8)}`;
}

export function netnsName(cluster: string, host: string): string {
  return `hw-${cluster}-${host}`;
}

export function hostMarker(cluster: string, host: string): string {
  return `hardway-lab:${cluster}/${host}`;
}

/**
 * The machine's address on the lab network: the highest usable address of the subnet that no
 * inventory host uses (10.240.0.254 for 10.240.0.0/24). Undefined when the subnet is full.
 */
export function bridgeAddress(cidr: Cidr, hosts: readonly Host[]): string | undefined {
  const used = new Set(hosts.map((h) => h.privateIp));
  const size = cidrSize(cidr);
  if (size < 4) return undefined;
  for (let n = cidr.base + size - 2; n > cidr.base; n--) {
    const ip = formatIp(n);
    if (!used.has(ip)) return ip;
  }
  return undefined;
}

export function planLab(inv: Inventory): LabPlan {
  const cidr = parseCidr(inv.lab.cidr) as Cidr;
  const cluster = inv.cluster.name;
  const root = `${LAB_ROOT}/${cluster}`;
  const address = bridgeAddress(cidr, inv.hosts);
  if (address === undefined) throw new Error(`lab.cidr ${cidr.text} has no address left for the machine's end of the bridge`);
  return {
    cluster,
    cidr,
    bridge: bridgeName(cluster),
    bridgeAddress: address,
    root,
    hosts: inv.hosts.map((host) => ({
      host,
      netns: netnsName(cluster, host.name),
      veth: vethName(cluster, host.name),
      stateDir: `${root}/${host.name}`,
      marker: hostMarker(cluster, host.name),
    })),
  };
}

/** A route as `ip -j -4 route show table all` prints it (the fields we read). */
export interface RouteEntry {
  dst: string;
  dev?: string;
  table?: string;
  type?: string;
  gateway?: string;
}

/** An interface as `ip -j -4 addr show` prints it (the fields we read). */
export interface AddrEntry {
  ifname: string;
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

function routeCidr(dst: string): Cidr | undefined {
  if (dst === 'default') return undefined;
  const text = dst.includes('/') ? dst : `${dst}/32`;
  const [ip, len] = text.split('/');
  const n = parseIp(ip ?? '');
  if (n === null) return undefined;
  const prefix = Number(len);
  const size = 2 ** (32 - prefix);
  return { base: n - (n % size), prefix, text };
}

/**
 * Routes and addresses of the machine that overlap `cidr`, as readable phrases, ignoring the lab's
 * own bridge (so a re-run is not refused by the lab's own route) and default routes (they cover
 * everything and send nothing to the lab subnet once the bridge route exists).
 */
export function overlappingRoutes(cidr: Cidr, routes: readonly RouteEntry[], addrs: readonly AddrEntry[], ownBridge: string): string[] {
  const found: string[] = [];
  for (const r of routes) {
    if (r.dev === ownBridge) continue;
    const c = routeCidr(r.dst);
    if (!c || c.prefix === 0 || !cidrsOverlap(c, cidr)) continue;
    const parts = [r.type && r.type !== 'unicast' ? r.type : '', r.dst, r.gateway ? `via ${r.gateway}` : '', r.dev ? `dev ${r.dev}` : '', r.table ? `table ${r.table}` : ''];
    found.push(`route "${parts.filter(Boolean).join(' ')}"`);
  }
  for (const a of addrs) {
    if (a.ifname === ownBridge) continue;
    for (const info of a.addr_info ?? []) {
      if (info.family && info.family !== 'inet') continue;
      if (!info.local || info.prefixlen === undefined) continue;
      const c = routeCidr(`${info.local}/${info.prefixlen}`);
      if (c && cidrsOverlap(c, cidr)) found.push(`address ${info.local}/${info.prefixlen} on ${a.ifname}`);
    }
  }
  return [...new Set(found)];
}

/** The first /24 among `10.<second>.<third>.0` candidates that overlaps nothing. For suggestions and tests. */
export function freeSubnet(routes: readonly RouteEntry[], addrs: readonly AddrEntry[], candidates: readonly string[]): string | undefined {
  return candidates.find((c) => {
    const cidr = parseCidr(c);
    return typeof cidr !== 'string' && overlappingRoutes(cidr, routes, addrs, '').length === 0;
  });
}

/** /24 candidates for a suggestion: 10.240.0.0/24 ... 10.254.255.0/24, in a fixed order. */
export function subnetCandidates(): string[] {
  const out: string[] = [];
  for (let b = 240; b < 255; b++) for (let c = 0; c < 256; c += 17) out.push(`10.${b}.${c}.0/24`);
  return out;
}

/** The lab host's sshd_config: only this host's address, key logins only, root allowed by key. */
export function renderSshdConfig(plan: LabHostPlan, cluster: string): string {
  return [
    `# sshd_config of lab host ${plan.host.name} (cluster ${cluster}), written by hardway 01-infra (lib/lab).`,
    '# This host runs its own sshd with its own host key; it listens only on its private address.',
    `ListenAddress ${plan.host.privateIp}`,
    'Port 22',
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'AuthorizedKeysFile .ssh/authorized_keys',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'X11Forwarding no',
    'PrintMotd no',
    'PidFile /run/sshd.pid',
    '# Room for many parallel sessions (the distribution benchmark).',
    'MaxStartups 64:30:128',
    'MaxSessions 32',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/**
 * The first process of a lab host (PID 1 of its PID namespace), run by `unshare` inside the
 * host's network namespace with new UTS and mount namespaces (propagation private, so nothing
 * mounted here is seen by the machine). Arguments: $1 the host's state dir, then the overlay
 * directories. It:
 *   1. mounts an overlay on each of those directories (lower: the machine's, upper: the host's
 *      disk under $1/upper), so whatever the steps write stays inside this host;
 *   2. mounts its own /proc (PID namespace), /sys (network namespace), /run, /tmp and /dev/shm,
 *      dropping its copies of other hosts' netns mounts first;
 *   3. makes the rest of / read-only in this mount namespace only (a bind remount), so a write
 *      outside the overlays fails instead of landing on the machine;
 *   4. takes its hostname from its own /etc/hostname (a neutral `lab-xxxxxx` until 02-prep sets it);
 *   5. becomes sshd in the foreground. When it exits, the kernel ends every process of the host.
 */
export const INIT_SCRIPT = `set -eu
state=$1; shift
for d in "$@"; do
  mount -t overlay "hardway-lab-$d" -o "lowerdir=/$d,upperdir=$state/upper/$d,workdir=$state/work/$d" "/$d"
done
mount -t proc proc /proc
mount -t sysfs sysfs /sys
if mountpoint -q /run/netns; then umount -R -l /run/netns; fi
mount -t tmpfs -o mode=0755,nosuid,nodev hardway-lab-run /run
mount -t tmpfs -o mode=1777,nosuid,nodev hardway-lab-tmp /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev hardway-lab-shm /dev/shm
mount -o remount,bind,ro /
mkdir -p /run/sshd /run/lock
chmod 0755 /run/sshd
hostname "$(cat /etc/hostname 2>/dev/null || echo lab-unnamed)"
echo "lab host $(hostname): mounts ready, starting sshd"
exec /usr/sbin/sshd -D -e
`;
