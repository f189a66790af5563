/** 02-prep: make each host's operating system ready for Kubernetes (MISSION §4). */
import { join } from 'node:path';
import type { Step } from '../runner.ts';
import { SSH_FLAGS, sshOptionsFromFlags, forEachHost } from '../ssh/index.ts';
import { writeFileAtomic } from '../fsutil.ts';
import { renderHaproxy, HAPROXY_CONFIG } from './render.ts';
import { actionsFor, type PrepEnv } from './actions.ts';

export const prepStep: Step = {
  id: '02-prep',
  title: "Prepare the hosts' operating systems",
  description:
    'Over SSH, on every host: hostname and /etc/hostname; the cluster hosts in /etc/hosts (a managed block); ' +
    'kernel modules overlay and br_netfilter loaded and listed in /etc/modules-load.d/k8s.conf; ' +
    'net.bridge.bridge-nf-call-iptables, net.bridge.bridge-nf-call-ip6tables and net.ipv4.ip_forward set to 1 and ' +
    'persisted in /etc/sysctl.d/k8s.conf; swap off now and in /etc/fstab; socat, conntrack and ipset on workers. ' +
    'On the load balancer: haproxy, with a TCP 6443 configuration to the controllers rendered from ' +
    'templates/haproxy.cfg.hbs, validated with haproxy -c and (re)started only when it changed. ' +
    'Each action checks first and reports "already" or "changed" per host; --dry-run reports what would change. ' +
    'One host failing does not stop the others; the step exits 1 if any failed, and a re-run finishes what is left.',
  flags: SSH_FLAGS,
  async run(ctx) {
    const opts = sshOptionsFromFlags(ctx);
    const haproxyConfig = renderHaproxy(ctx.inventory);
    if (!ctx.dryRun) {
      // The rendered file sits in the workspace too, so it can be read without logging in.
      const local = join(ctx.dir, 'prep', ctx.inventory.loadBalancer.name, 'haproxy.cfg');
      writeFileAtomic(local, haproxyConfig, 0o644);
      ctx.log.info(ctx.inventory.loadBalancer.name, `rendered ${HAPROXY_CONFIG} from templates/haproxy.cfg.hbs (copy: ${local})`);
    }
    const env: PrepEnv = { inventory: ctx.inventory, lab: ctx.inventory.provider === 'lab', dryRun: ctx.dryRun, haproxyConfig };
    const outcomes = await forEachHost(
      ctx,
      ctx.inventory.hosts,
      opts,
      async (s) => {
        for (const action of actionsFor(s.host)) {
          try {
            await action.run(s, env);
          } catch (e) {
            if (!s.connected) throw e; // the host is gone: one error, not one per remaining action
            s.report(action.name, 'failed', (e as Error).message);
          }
        }
      },
      '02-prep',
    );
    return {
      ok: outcomes.every((o) => o.ok),
      dryRun: ctx.dryRun,
      hosts: outcomes.map(({ host, ok, error, reports, counts }) => ({ host, ok, ...(error ? { error } : {}), counts, actions: reports })),
    };
  },
};
