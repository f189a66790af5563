/**
 * 02-prep's desired state as pure functions of the inventory: the files it installs and the
 * values it sets. The actions (./actions.ts) compare these with what a host has.
 */
import Handlebars from 'handlebars';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Inventory, Role } from '../inventory.ts';

export const HOSTS_FILE = '/etc/hosts';
export const HOSTS_BEGIN = '# BEGIN hardway cluster hosts (managed by 02-prep: edits inside this block are replaced)';
export const HOSTS_END = '# END hardway cluster hosts';

/** `<privateIp> <name>` for every cluster host, load balancer first. */
export function hostsBlock(inv: Inventory): string {
  return inv.hosts.map((h) => `${h.privateIp} ${h.name}`).join('\n');
}

/**
 * `text` with the lines between `begin` and `end` replaced by `body` (markers included), or with
 * the block appended when the markers are absent. Everything outside the block is kept as is.
 */
export function withManagedBlock(text: string, begin: string, end: string, body: string): string {
  const block = `${begin}\n${body}${body.endsWith('\n') || body === '' ? '' : '\n'}${end}\n`;
  const lines = text.split('\n');
  const b = lines.indexOf(begin);
  const e = b >= 0 ? lines.indexOf(end, b + 1) : -1;
  if (b >= 0 && e > b) {
    const before = lines.slice(0, b).join('\n');
    const after = lines.slice(e + 1).join('\n');
    return `${before}${before ? '\n' : ''}${block}${after}`;
  }
  const base = text === '' || text.endsWith('\n') ? text : `${text}\n`;
  return `${base}${block}`;
}

export const MODULES = ['overlay', 'br_netfilter'] as const;
export const MODULES_LOAD_FILE = '/etc/modules-load.d/k8s.conf';

/** How to tell a module's feature is present when /sys/module does not show it (built in without parameters). */
export const MODULE_EVIDENCE: Record<(typeof MODULES)[number], { test: string; what: string }> = {
  overlay: { test: 'grep -qw overlay /proc/filesystems', what: 'overlay is listed in /proc/filesystems' },
  br_netfilter: { test: '[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]', what: '/proc/sys/net/bridge/bridge-nf-call-iptables exists' },
};

export function modulesLoadConf(): string {
  return [
    '# Kernel modules containerd and kube-proxy need, loaded at boot. Written by hardway 02-prep.',
    '# overlay: container image layers; br_netfilter: bridged pod traffic passes iptables.',
    ...MODULES,
    '',
  ].join('\n');
}

export const SYSCTL_FILE = '/etc/sysctl.d/k8s.conf';
export const SYSCTLS: readonly (readonly [string, string])[] = [
  ['net.bridge.bridge-nf-call-iptables', '1'],
  ['net.bridge.bridge-nf-call-ip6tables', '1'],
  ['net.ipv4.ip_forward', '1'],
];

export function sysctlConf(): string {
  return [
    '# Kubernetes networking: bridged traffic goes through iptables, and the node forwards packets.',
    '# Written by hardway 02-prep; applied at boot by systemd-sysctl (or `sysctl --system`).',
    ...SYSCTLS.map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n');
}

/** `/proc/sys/...` path of a sysctl key. */
export function sysctlPath(key: string): string {
  return `/proc/sys/${key.replace(/\./g, '/')}`;
}

export const FSTAB_FILE = '/etc/fstab';
const SWAP_NOTE = '# swap disabled by hardway 02-prep (the kubelet refuses to run with swap on): ';

/** `/etc/fstab` with every active swap line commented out; comments and other lines untouched. */
export function fstabWithoutSwap(text: string): { text: string; disabled: string[] } {
  const disabled: string[] = [];
  const out = text.split('\n').map((line) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return line;
    const fields = t.split(/\s+/);
    if (fields[2] !== 'swap') return line;
    disabled.push(t);
    return `${SWAP_NOTE}${line}`;
  });
  return { text: out.join('\n'), disabled };
}

/** Debian packages each role needs (MISSION §4). */
export function packagesFor(role: Role): string[] {
  if (role === 'worker') return ['socat', 'conntrack', 'ipset'];
  if (role === 'loadbalancer') return ['haproxy'];
  return [];
}

export const HAPROXY_CONFIG = '/etc/haproxy/haproxy.cfg';
export const API_PORT = 6443;

export function haproxyTemplatePath(): string {
  return fileURLToPath(new URL('../../templates/haproxy.cfg.hbs', import.meta.url));
}

/**
 * The load balancer's haproxy.cfg. Handlebars runs with `noEscape` (its HTML escaping would
 * corrupt config text) and `strict` (a missing value throws). `strict` does not check a
 * helper's argument, so `{{#each controler}}` would silently render no servers: the data is
 * checked before rendering and the output after.
 */
export function renderHaproxy(inv: Inventory, template = readFileSync(haproxyTemplatePath(), 'utf8')): string {
  const controllers = inv.controllers.map((c) => ({ name: c.name, privateIp: c.privateIp }));
  if (controllers.length === 0) throw new Error('haproxy needs at least one controller to send the API to');
  for (const c of controllers) {
    if (!c.name || !c.privateIp) throw new Error(`controller ${JSON.stringify(c)} lacks a name or privateIp`);
  }
  const render = Handlebars.create().compile(template, { noEscape: true, strict: true });
  const text = render({ loadBalancer: { name: inv.loadBalancer.name }, controllers, port: API_PORT });
  for (const c of controllers) {
    const want = `server ${c.name} ${c.privateIp}:${API_PORT} check`;
    if (!text.includes(want)) throw new Error(`rendered haproxy.cfg lacks "${want}": check templates/haproxy.cfg.hbs`);
  }
  if (!text.includes(`bind *:${API_PORT}`)) throw new Error(`rendered haproxy.cfg does not bind *:${API_PORT}`);
  return text;
}
