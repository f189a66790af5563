/** 05-distribute: each host gets exactly the files of its role (MISSION.md §3), checked on arrival and verified in place. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Step, Context } from '../runner.ts';
import { InputError } from '../errors.ts';
import { readManifest, MANIFEST_FILE } from '../manifest.ts';
import { sha256 } from '../fsutil.ts';
import { SSH_FLAGS, sshOptionsFromFlags, forEachHost } from '../ssh/index.ts';
import { planDistribution, describeHostPlan, PlanError, MANAGED_DIRS, type DistributionPlan } from './plan.ts';
import { distributeToHost, type HostResult } from './host.ts';

/** Reads every file some host receives and checks it against the manifest's SHA-256. Throws InputError naming each mismatch. */
export function readSources(dir: string, plan: DistributionPlan): Map<string, Buffer> {
  const content = new Map<string, Buffer>();
  const problems: string[] = [];
  for (const src of plan.sources) {
    let data: Buffer;
    try {
      data = readFileSync(join(dir, src.local));
    } catch (e) {
      problems.push(`${src.local} (${src.ids.join(', ')}) cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      continue;
    }
    const got = sha256(data);
    if (got !== src.sha256) problems.push(`${src.local} has SHA-256 ${got}, the manifest records ${src.sha256}`);
    else content.set(src.local, data);
  }
  if (problems.length > 0) {
    throw new InputError(
      join(dir, MANIFEST_FILE),
      `the workspace does not match its manifest, so nothing was sent: ${problems.join('; ')}. ` +
        'If you changed a file on purpose, re-run the step that owns it (03-pki or 04-kubeconfig); otherwise find out who did',
    );
  }
  return content;
}

export const distributeStep: Step = {
  id: '05-distribute',
  title: 'Install each host\'s certificates, keys and kubeconfigs',
  description:
    'Reads the workspace manifest (written by 03-pki and 04-kubeconfig) and gives each host the files of its role only ' +
    '(MISSION.md §3): controllers the CA certificates, the kubernetes-ca key, the API server, etcd and front-proxy ' +
    'pairs, the service-account keys, their kubeconfigs and the encryption config; workers the kubernetes-ca ' +
    'certificate, their own kubelet pair and kubeconfig and the kube-proxy kubeconfig; the load balancer nothing. ' +
    'Before anything is sent, every local file must match the SHA-256 the manifest records. Per host, over one SSH ' +
    `connection: one command surveys ${MANAGED_DIRS.join(', ')}; only files whose SHA-256 differs are sent ` +
    '(base64 on stdin, never in a command line), written to 0600 temp files next to their targets, checked by ' +
    'SHA-256 and renamed into place owned by root (keys 0600, certificates 0644; a directory holding a key 0700, ' +
    'else 0755); a wrong mode or owner alone is fixed in place. Then, on the host, every certificate is verified with openssl against the installed CA, every key ' +
    'against its certificate, and any private key under those directories that the map does not put there fails ' +
    'the host (it is named, never deleted). --dry-run says what would change. One host failing does not stop the ' +
    'others; the step exits 1 if any failed, and a re-run does only what is left.',
  flags: SSH_FLAGS,
  async run(ctx: Context) {
    const opts = sshOptionsFromFlags(ctx);
    const manifest = readManifest(ctx.dir);
    if (!manifest) throw new InputError(join(ctx.dir, MANIFEST_FILE), 'not found: run 03-pki and 04-kubeconfig first');
    let plan: DistributionPlan;
    try {
      plan = planDistribution(manifest, ctx.inventory);
    } catch (e) {
      if (e instanceof PlanError) throw new InputError(join(ctx.dir, MANIFEST_FILE), `cannot distribute: ${e.problems.join('; ')}`);
      throw e;
    }
    const content = readSources(ctx.dir, plan);
    ctx.log.info('', `${content.size} workspace files match the manifest's SHA-256${ctx.dryRun ? '; dry run: nothing will be changed' : ''}`);
    for (const hp of plan.hosts) ctx.log.info(hp.host.name, describeHostPlan(hp));

    const byName = new Map(plan.hosts.map((hp) => [hp.host.name, hp]));
    const outcomes = await forEachHost(
      ctx,
      plan.hosts.map((hp) => hp.host),
      opts,
      (s) => distributeToHost(s, byName.get(s.name)!, { dryRun: ctx.dryRun, content: (f) => content.get(f.local)! }),
      '05-distribute',
    );

    const failed = outcomes.filter((o) => !o.ok);
    const total = (k: 'changed' | 'already' | 'wouldChange') => outcomes.reduce((n, o) => n + o.counts[k], 0);
    if (ctx.dryRun) {
      ctx.log.info('', `dry run: ${total('wouldChange')} change(s) on ${outcomes.filter((o) => o.counts.wouldChange > 0).length} host(s); nothing was changed`);
    } else if (failed.length === 0) {
      ctx.log.info('', `all ${outcomes.length} hosts hold exactly what their role needs (${total('changed')} changed, ${total('already')} already), verified on each host with openssl`);
    } else {
      ctx.log.error('', `${failed.length} of ${outcomes.length} host(s) failed: ${failed.map((o) => o.host).join(', ')}. The others are complete; fix the cause and run again: it does only what is left`);
    }
    return {
      ok: failed.length === 0,
      dryRun: ctx.dryRun,
      hosts: outcomes.map(({ host, ok, error, counts, value, ms }) => {
        const v = value as HostResult | undefined;
        return { host, role: byName.get(host)?.host.role, ok, ...(error ? { error } : {}), counts, ms, ...(v ?? {}) };
      }),
    };
  },
};
