/**
 * 02-prep's actions (MISSION §4). Each one looks at the host first, acts only when something
 * differs, and reports exactly one line: `already`, `changed`, `would-change` (--dry-run) or
 * `failed` with the reason. Where a lab host cannot do what a VM can (its kernel, swap and package
 * mirror are the machine's), the action reports the real state and fails with "cannot: ...";
 * it never claims a success it did not see.
 */
import type { Host, Inventory } from '../inventory.ts';
import type { Session } from '../ssh/session.ts';
import { shellQuote } from '../exec.ts';
import {
  HOSTS_FILE,
  HOSTS_BEGIN,
  HOSTS_END,
  hostsBlock,
  withManagedBlock,
  MODULES,
  MODULE_EVIDENCE,
  MODULES_LOAD_FILE,
  modulesLoadConf,
  SYSCTLS,
  SYSCTL_FILE,
  sysctlConf,
  sysctlPath,
  FSTAB_FILE,
  fstabWithoutSwap,
  packagesFor,
  HAPROXY_CONFIG,
  API_PORT,
} from './render.ts';

export interface PrepEnv {
  inventory: Inventory;
  /** Lab hosts share the machine's kernel (modules, swap) and have no route to a package mirror. */
  lab: boolean;
  dryRun: boolean;
  /** The rendered haproxy.cfg for the load balancer. */
  haproxyConfig: string;
}

export interface Action {
  /** The first word(s) of the report line: `controller-0: <name> changed (...)`. */
  name: string;
  appliesTo(host: Host): boolean;
  run(s: Session, env: PrepEnv): Promise<void>;
}

const ROOT = { sudo: true } as const;
const all = () => true;

const hostname: Action = {
  name: 'hostname',
  appliesTo: all,
  async run(s, env) {
    const want = s.host.name;
    const now = (await s.run('hostname', ROOT)).stdout.trim();
    const file = ((await s.readFile('/etc/hostname')) ?? '').trim();
    if (now === want && file === want) return s.report('hostname', 'already', want);
    const was = now === want ? `/etc/hostname was ${file || 'empty'}` : `was ${now}`;
    if (env.dryRun) return s.report('hostname', 'would-change', `${was}, would be ${want}`);
    if (file !== want) await s.putFile(Buffer.from(`${want}\n`), '/etc/hostname', 0o644);
    if (now !== want) {
      const systemd = await s.check('[ -d /run/systemd/system ] && command -v hostnamectl >/dev/null', ROOT);
      await s.run(systemd ? `hostnamectl set-hostname ${shellQuote(want)}` : `hostname ${shellQuote(want)}`, ROOT);
    }
    const after = (await s.run('hostname', ROOT)).stdout.trim();
    if (after !== want) return s.report('hostname', 'failed', `set to ${want} but the host says ${after}`);
    s.report('hostname', 'changed', was);
  },
};

const etcHosts: Action = {
  name: 'hosts',
  appliesTo: all,
  async run(s, env) {
    const old = (await s.readFile(HOSTS_FILE)) ?? '';
    const text = withManagedBlock(old, HOSTS_BEGIN, HOSTS_END, hostsBlock(env.inventory));
    const r = await s.putFile(Buffer.from(text), HOSTS_FILE, 0o644, { dryRun: env.dryRun });
    s.report('hosts', r.status, `${HOSTS_FILE}: ${env.inventory.hosts.length} cluster hosts${r.reason ? `; ${r.reason}` : ''}`);
  },
};

const modulesLoad: Action = {
  name: 'modules-load.d',
  appliesTo: all,
  async run(s, env) {
    const r = await s.putFile(Buffer.from(modulesLoadConf()), MODULES_LOAD_FILE, 0o644, { dryRun: env.dryRun });
    s.report('modules-load.d', r.status, `${MODULES_LOAD_FILE}: ${MODULES.join(' ')}${r.reason ? `; ${r.reason}` : ''}`);
  },
};

/** `module` (loaded module), `builtin`, `feature` (its effects are visible) or `missing`. */
async function moduleState(s: Session, m: (typeof MODULES)[number]): Promise<string> {
  const q = shellQuote(m);
  const script = [
    `if [ -e /sys/module/${q}/initstate ]; then echo module`,
    `elif [ -d /sys/module/${q} ]; then echo builtin`,
    `elif grep -qs "/${m}.ko" "/lib/modules/$(uname -r)/modules.builtin"; then echo builtin`,
    `elif ${MODULE_EVIDENCE[m].test}; then echo feature`,
    'else echo missing; fi',
  ].join('\n');
  return (await s.run(script, ROOT)).stdout.trim();
}

function moduleAction(m: (typeof MODULES)[number]): Action {
  const name = `module ${m}`;
  const describe = (state: string) =>
    state === 'module' ? 'loaded' : state === 'builtin' ? 'built into the kernel' : `built into the kernel: ${MODULE_EVIDENCE[m].what}`;
  return {
    name,
    appliesTo: all,
    async run(s, env) {
      const state = await moduleState(s, m);
      if (state !== 'missing') return s.report(name, 'already', describe(state));
      if (env.lab) {
        return s.report(name, 'failed', `cannot: not loaded, and a lab host shares this machine's kernel, so it cannot load modules itself; on the machine run: modprobe ${m}`);
      }
      if (env.dryRun) return s.report(name, 'would-change', `not loaded; would run modprobe ${m}`);
      await s.run(`modprobe ${shellQuote(m)}`, ROOT);
      const after = await moduleState(s, m);
      if (after === 'missing') return s.report(name, 'failed', `modprobe ${m} succeeded but the module is still not there`);
      s.report(name, 'changed', `loaded with modprobe ${m}`);
    },
  };
}

const sysctlFile: Action = {
  name: 'sysctl.d',
  appliesTo: all,
  async run(s, env) {
    const r = await s.putFile(Buffer.from(sysctlConf()), SYSCTL_FILE, 0o644, { dryRun: env.dryRun });
    s.report('sysctl.d', r.status, `${SYSCTL_FILE}${r.reason ? `: ${r.reason}` : ''}`);
  },
};

function sysctlAction(key: string, want: string): Action {
  const name = `sysctl ${key}`;
  const path = sysctlPath(key);
  const read = async (s: Session) => {
    const r = await s.run(`if [ -e ${path} ]; then cat ${path}; else exit 3; fi`, { ...ROOT, okCodes: [3] });
    return r.code === 3 ? undefined : r.stdout.trim();
  };
  return {
    name,
    appliesTo: all,
    async run(s, env) {
      const now = await read(s);
      if (now === undefined) {
        const why = key.startsWith('net.bridge.') ? ' (br_netfilter is not loaded in this kernel)' : '';
        return s.report(name, 'failed', `cannot: ${path} does not exist${why}`);
      }
      if (now === want) return s.report(name, 'already', `= ${want}`);
      if (env.dryRun) return s.report(name, 'would-change', `is ${now}, would set ${want}`);
      await s.run(`sysctl -q -w ${shellQuote(`${key}=${want}`)}`, ROOT);
      const after = await read(s);
      if (after !== want) return s.report(name, 'failed', `set to ${want} but it reads ${after ?? 'nothing'}`);
      s.report(name, 'changed', `was ${now}, now ${want}`);
    },
  };
}

const swapNow: Action = {
  name: 'swap',
  appliesTo: all,
  async run(s, env) {
    const active = (await s.run('tail -n +2 /proc/swaps', ROOT)).stdout.trim().split('\n').filter(Boolean).map((l) => l.split(/\s+/)[0]);
    if (active.length === 0) return s.report('swap', 'already', 'off');
    if (env.lab) {
      return s.report('swap', 'failed', `cannot: swap (${active.join(', ')}) belongs to this machine's kernel, which lab hosts share; turn it off on the machine (swapoff -a) and re-run`);
    }
    if (env.dryRun) return s.report('swap', 'would-change', `on (${active.join(', ')}); would run swapoff -a`);
    await s.run('swapoff -a', ROOT);
    const left = (await s.run('tail -n +2 /proc/swaps', ROOT)).stdout.trim();
    if (left) return s.report('swap', 'failed', `still on after swapoff -a: ${left}`);
    s.report('swap', 'changed', `turned off ${active.join(', ')}`);
  },
};

const fstab: Action = {
  name: 'fstab',
  appliesTo: all,
  async run(s, env) {
    const old = await s.readFile(FSTAB_FILE);
    if (old === undefined) return s.report('fstab', 'already', `no ${FSTAB_FILE}, so no swap at boot`);
    const { text, disabled } = fstabWithoutSwap(old);
    if (disabled.length === 0) return s.report('fstab', 'already', 'no swap entries');
    const mode = Number.parseInt((await s.run(`stat -c %a ${FSTAB_FILE}`, ROOT)).stdout.trim(), 8) || 0o644;
    const r = await s.putFile(Buffer.from(text), FSTAB_FILE, mode, { dryRun: env.dryRun });
    s.report('fstab', r.status, `${r.status === 'would-change' ? 'would comment' : 'commented'} out ${disabled.length} swap entr${disabled.length === 1 ? 'y' : 'ies'}`);
  },
};

async function missingPackages(s: Session, pkgs: readonly string[]): Promise<string[]> {
  const r = await s.run(`dpkg-query -W -f='\${Package} \${db:Status-Abbrev}\\n' ${pkgs.map(shellQuote).join(' ')} 2>/dev/null`, { okCodes: [1] });
  const installed = new Set(
    r.stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter(([, st]) => st === 'ii')
      .map(([p]) => p!.split(':')[0]),
  );
  return pkgs.filter((p) => !installed.has(p));
}

const packages: Action = {
  name: 'packages',
  appliesTo: (h) => packagesFor(h.role).length > 0,
  async run(s, env) {
    const want = packagesFor(s.host.role);
    const missing = await missingPackages(s, want);
    if (missing.length === 0) return s.report('packages', 'already', want.join(' '));
    if (env.lab) {
      return s.report(
        'packages',
        'failed',
        `cannot: ${missing.join(' ')} not installed; lab hosts have no route to a package mirror and see the packages installed on this machine, so install them there (apt-get install ${missing.join(' ')}; scripts/bootstrap.sh does) and re-run`,
      );
    }
    if (env.dryRun) return s.report('packages', 'would-change', `would install ${missing.join(' ')}`);
    const apt = 'DEBIAN_FRONTEND=noninteractive apt-get';
    await s.run(`${apt} update -q && ${apt} install -y -q --no-install-recommends ${missing.map(shellQuote).join(' ')}`, ROOT);
    const still = await missingPackages(s, want);
    if (still.length > 0) return s.report('packages', 'failed', `apt-get finished but ${still.join(' ')} is still not installed`);
    s.report('packages', 'changed', `installed ${missing.join(' ')}`);
  },
};

const HAPROXY_PID = '/run/haproxy.pid';

/** Is haproxy serving, and how is it run here (systemd on a VM, a daemon with a pid file in the lab)? */
async function haproxyRunning(s: Session, systemd: boolean): Promise<string | undefined> {
  if (systemd) return (await s.check('systemctl is-active --quiet haproxy', ROOT)) ? 'active (systemd)' : undefined;
  const r = await s.run(`p=$(cat ${HAPROXY_PID} 2>/dev/null | head -n1); [ -n "$p" ] && [ "$(cat /proc/$p/comm 2>/dev/null)" = haproxy ] && echo "$p" || true`, ROOT);
  const pid = r.stdout.trim();
  return pid ? `running, pid ${pid}` : undefined;
}

async function listening(s: Session): Promise<boolean> {
  for (let i = 0; i < 20; i++) {
    if (await s.check(`ss -Hltn 'sport = :${API_PORT}' | grep -q .`, ROOT)) return true;
    await new Promise((r) => setTimeout(r, 150));
  }
  return false;
}

const haproxy: Action = {
  name: 'haproxy',
  appliesTo: (h) => h.role === 'loadbalancer',
  async run(s, env) {
    const cfg = await s.putFile(Buffer.from(env.haproxyConfig), HAPROXY_CONFIG, 0o644, { dryRun: env.dryRun, validate: 'haproxy -c -q -f {}' });
    const backends = env.inventory.controllers.map((c) => `${c.privateIp}:${API_PORT}`).join(' ');
    s.report('haproxy config', cfg.status, `${HAPROXY_CONFIG}: *:${API_PORT} -> ${backends}${cfg.reason ? `; ${cfg.reason}${cfg.status === 'changed' ? ', validated by haproxy -c' : ''}` : ''}`);

    const systemd = await s.check('[ -d /run/systemd/system ]', ROOT);
    const running = await haproxyRunning(s, systemd);
    const configChanged = cfg.status !== 'already';
    if (running && !configChanged) return s.report('haproxy service', 'already', running);
    const why = !running ? 'was not running' : 'config changed';
    if (env.dryRun) return s.report('haproxy service', 'would-change', `${why}; would ${running ? 'restart' : 'start'} it`);
    const log = '/var/log/hardway-haproxy.log';
    if (systemd) {
      await s.run('systemctl enable haproxy >/dev/null 2>&1 || true; systemctl restart haproxy', ROOT);
    } else if (running) {
      // No systemd (a lab host): a new haproxy takes over the port, the old one finishes its connections.
      await s.run(`haproxy -D -f ${HAPROXY_CONFIG} -p ${HAPROXY_PID} -sf $(cat ${HAPROXY_PID}) </dev/null >>${log} 2>&1`, ROOT);
    } else {
      await s.run(`haproxy -D -f ${HAPROXY_CONFIG} -p ${HAPROXY_PID} </dev/null >>${log} 2>&1`, ROOT);
    }
    const now = await haproxyRunning(s, systemd);
    if (!now || !(await listening(s))) {
      const tail = (await s.run(systemd ? 'journalctl -u haproxy -n 5 --no-pager 2>/dev/null || true' : `tail -n 5 ${log} 2>/dev/null || true`, ROOT)).stdout.trim();
      return s.report('haproxy service', 'failed', `${running ? 'restarted' : 'started'} but not listening on :${API_PORT}${tail ? `: ${tail.split('\n').pop()}` : ''}`);
    }
    s.report('haproxy service', 'changed', `${running ? 'restarted' : 'started'} (${why}); ${now}, listening on :${API_PORT}`);
  },
};

/** Every action, in the order they run on a host. */
export const ACTIONS: readonly Action[] = [
  hostname,
  etcHosts,
  modulesLoad,
  ...MODULES.map(moduleAction),
  sysctlFile,
  ...SYSCTLS.map(([k, v]) => sysctlAction(k, v)),
  swapNow,
  fstab,
  packages,
  haproxy,
];

export function actionsFor(host: Host): Action[] {
  return ACTIONS.filter((a) => a.appliesTo(host));
}
