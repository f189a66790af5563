/**
 * 04-kubeconfig: everything the components need besides certificates. One kubeconfig per client
 * of the API server (the plan in plan.ts), with the CA, client certificate and key embedded, and
 * the EncryptionConfiguration that makes kube-apiserver encrypt Secrets in etcd.
 *
 * The step first computes every file and checks every input, then writes: a bad input leaves
 * the workspace untouched. A kubeconfig is rewritten only when what it renders to changed, and
 * the log says why; the encryption key is generated once and only ever changed on request.
 */
import { chmodSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Context, Step, StepResult } from '../runner.ts';
import { InputError } from '../errors.ts';
import { readIfExists, sha256, writeFileAtomic, SECRET_MODE } from '../fsutil.ts';
import { readManifest, updateManifest, type ManifestEntry } from '../manifest.ts';
import { ENCRYPTION_CONFIG_FILE, KUBECONFIG_DIR, STEP_ID, encryptionDestinations, planKubeconfigs, type KubeconfigPlan } from './plan.ts';
import { loadTemplate, renderEncryptionConfig, renderKubeconfig, ENCRYPTION_TEMPLATE, KUBECONFIG_TEMPLATE, type Template } from './render.ts';
import { readPkiInputs, serverProblems, type PkiInputs } from './pki.ts';
import { readInputs, rewriteReason, writeInputs, type KubeconfigInputs, type KubeconfigRecord } from './inputs.ts';
import { activeKey, allKeyNames, dropOldKeys, initialKeys, parseEncryptionConfig, rotate, type EncryptionKeys } from './encryption.ts';

export type FileAction = 'written' | 'rewritten' | 'unchanged';

/** One file the step decided on, before anything is written. */
interface Planned {
  /** Log subject: kubeconfig name or "encryption-config". */
  readonly subject: string;
  readonly path: string;
  readonly text: string;
  readonly action: FileAction;
  /** Why it is rewritten (one line), for rewritten files. */
  readonly reason?: string;
  /** The file is right but its mode is not 0600. */
  readonly fixMode: boolean;
}

export interface KubeconfigOutcome {
  name: string;
  path: string;
  server: string;
  user: string;
  action: FileAction;
  reason?: string;
}

export interface EncryptionOutcome {
  path: string;
  action: FileAction | 'rotated' | 'pruned';
  /** Provider and name of the key that encrypts new writes. Never the key itself. */
  provider: string;
  activeKey: string;
  keys: string[];
}

const ROTATE = 'rotate-encryption-key';
const DROP = 'drop-old-encryption-keys';
const REPLACE_LOST = 'replace-lost-encryption-key';

export const kubeconfigStep: Step = {
  id: STEP_ID,
  title: 'Write the kubeconfigs and the encryption config',
  description:
    'Writes into the workspace one kubeconfig per API client (admin for the workstation and for the controllers, ' +
    "each worker's kubelet, kube-proxy, kube-controller-manager, kube-scheduler), each embedding the kubernetes-ca " +
    'certificate and its client certificate and key from 03-pki, and the EncryptionConfiguration for Secrets. ' +
    'A re-run rewrites a kubeconfig only when its inputs changed and says why. The encryption key is generated once; ' +
    `--${ROTATE} adds a new one in front of it.`,
  flags: [
    { name: ROTATE, type: 'boolean', description: 'add a new first encryption key, keep the old ones after it, and print what to do next' },
    { name: DROP, type: 'boolean', description: 'remove every encryption key but the first; only after all Secrets were rewritten with it' },
    { name: REPLACE_LOST, type: 'boolean', description: 'make a new encryption key when the old file is lost; only if no Secret was ever stored with it' },
  ],
  run,
};

async function run(ctx: Context): Promise<StepResult> {
  const { inventory: inv, dir, log } = ctx;
  const rotateKey = ctx.flags[ROTATE] === true;
  const drop = ctx.flags[DROP] === true;
  const replaceLost = ctx.flags[REPLACE_LOST] === true;
  if ([rotateKey, drop, replaceLost].filter(Boolean).length > 1) {
    throw new InputError('command line', `--${ROTATE}, --${DROP} and --${REPLACE_LOST} are separate operations; use one at a time`);
  }

  // 1. Read and check every input. Nothing is written until all of this has passed.
  const plan = planKubeconfigs(inv);
  const pki = readPkiInputs(dir, plan);
  const problems = serverProblems(plan, pki.apiserver);
  if (problems.length > 0) throw new InputError(join(dir, pki.apiserverPath), problems.join('\n'));
  for (const w of pki.expiring) log.warn('pki', `${w}: renew it with 03-pki, then re-run this step`);

  const template = loadTemplate(KUBECONFIG_TEMPLATE);
  const previous = readInputs(dir);
  const records: Record<string, KubeconfigRecord> = {};
  const kubeconfigs: { row: KubeconfigPlan; planned: Planned }[] = [];
  for (const row of plan) {
    const { text, inputs } = renderRow(row, pki, inv.cluster.name, template);
    const existing = readIfExists(join(dir, row.path));
    const action: FileAction = existing === undefined ? 'written' : existing === text ? 'unchanged' : 'rewritten';
    const reason = action === 'rewritten' ? rewriteReason(previous.kubeconfigs[row.name], inputs, sha256(existing!)) : undefined;
    records[row.name] = { ...inputs, output: sha256(text) };
    kubeconfigs.push({ row, planned: { subject: row.name, path: row.path, text, action, reason, fixMode: action === 'unchanged' && !isPrivate(join(dir, row.path)) } });
  }
  const encryption = planEncryption(ctx, { rotateKey, drop, replaceLost });

  // 2. Write (or, with --dry-run, say what would be written).
  for (const { row, planned } of kubeconfigs) {
    apply(ctx, planned, `server ${row.server}, user ${row.user}`);
  }
  apply(ctx, encryption.planned, `${encryption.outcome.provider}, active key ${encryption.outcome.activeKey}`);
  for (const name of Object.keys(previous.kubeconfigs)) {
    if (!records[name]) {
      log.warn(name, `no longer in the plan (host removed from the inventory?): dropped from the manifest so 05-distribute stops sending it; delete ${join(dir, KUBECONFIG_DIR, `${name}.kubeconfig`)} if it is no longer wanted`);
    }
  }

  const entries: ManifestEntry[] = [
    ...kubeconfigs.map(({ row, planned }): ManifestEntry => ({
      id: `kubeconfig/${row.name}`,
      step: STEP_ID,
      kind: 'kubeconfig',
      path: row.path,
      sha256: sha256(planned.text),
      secret: true,
      destinations: row.destinations.map((d) => ({ ...d })),
      purpose: row.purpose,
    })),
    {
      id: 'encryption-config',
      step: STEP_ID,
      kind: 'encryption-config',
      path: ENCRYPTION_CONFIG_FILE,
      sha256: sha256(encryption.planned.text),
      secret: true,
      destinations: encryptionDestinations(inv),
      purpose: 'EncryptionConfiguration for Secrets, read by kube-apiserver (--encryption-provider-config); its keys decrypt every Secret in etcd.',
    },
  ];
  if (!ctx.dryRun) {
    writeInputs(dir, records);
    updateManifest(dir, inv.cluster.name, STEP_ID, entries);
  }

  encryption.nextSteps.forEach((line, i) => log.info(i === 0 ? 'encryption-config' : '', line));
  const changed = [...kubeconfigs.map((k) => k.planned), encryption.planned].filter((p) => p.action !== 'unchanged').length;
  const verb = ctx.dryRun ? 'would change' : 'changed';
  log.info('', `${changed} of ${kubeconfigs.length + 1} files ${verb} in ${dir}${ctx.dryRun ? ' (dry run: nothing written)' : ''}.`);
  if (!ctx.dryRun) {
    log.info('', `kubectl from this workstation: export KUBECONFIG=${join(dir, KUBECONFIG_DIR, 'admin.kubeconfig')}`);
    log.info('', `Next: node scripts/05-distribute.mjs --inventory ${ctx.inventoryPath} --dir ${dir}`);
  }

  return {
    ok: true,
    dryRun: ctx.dryRun,
    kubeconfigs: kubeconfigs.map(({ row, planned }): KubeconfigOutcome => ({
      name: row.name,
      path: row.path,
      server: row.server,
      user: row.user,
      action: planned.action,
      ...(planned.reason ? { reason: planned.reason } : {}),
    })),
    encryptionConfig: encryption.outcome,
  };
}

/** The text of one kubeconfig and the inputs it was made from. Pure. */
function renderRow(row: KubeconfigPlan, pki: PkiInputs, cluster: string, template: Template): { text: string; inputs: KubeconfigInputs } {
  const creds = pki.credentials.get(row.certId)!;
  const header = [
    `${row.name}.kubeconfig: read by ${row.readBy}.`,
    `Generated by hardway 04-kubeconfig from ${template.name}; re-running rewrites it only when an input changes.`,
    `cluster ${cluster} (inventory cluster.name); server ${row.server} (${row.serverFrom}).`,
    `user ${row.user}${row.group ? `, group ${row.group}` : ''}: the subject of ${creds.cert.path}, signed by ${pki.ca.path}.`,
    `Embeds the private key ${creds.key.path}: keep this file 0600. Installed at ${row.installedAt}.`,
  ];
  const text = renderKubeconfig(template, {
    header,
    cluster,
    server: row.server,
    user: row.user,
    context: `${row.user}@${cluster}`,
    caPem: pki.ca.text,
    certPem: creds.cert.text,
    keyPem: creds.key.text,
  });
  return {
    text,
    inputs: { server: row.server, cluster, user: row.user, ca: pki.ca.sha256, cert: creds.cert.sha256, key: creds.key.sha256, template: template.sha256 },
  };
}

interface EncryptionPlan {
  planned: Planned;
  outcome: EncryptionOutcome;
  /** What the operator must do next, one sentence a line. */
  nextSteps: string[];
}

function planEncryption(ctx: Context, op: { rotateKey: boolean; drop: boolean; replaceLost: boolean }): EncryptionPlan {
  const { inventory: inv, dir, log } = ctx;
  const wanted = inv.encryption.provider;
  const abs = join(dir, ENCRYPTION_CONFIG_FILE);
  const template = loadTemplate(ENCRYPTION_TEMPLATE);
  const existing = readIfExists(abs);
  const render = (keys: EncryptionKeys) => renderEncryptionConfig(template, { header: encryptionHeader(template, keys), providers: keys.providers });
  const planned = (text: string, action: FileAction, reason?: string): Planned => ({
    subject: 'encryption-config',
    path: ENCRYPTION_CONFIG_FILE,
    text,
    action,
    reason,
    fixMode: action === 'unchanged' && !isPrivate(abs),
  });
  const outcome = (keys: EncryptionKeys, action: EncryptionOutcome['action']): EncryptionOutcome => {
    const a = activeKey(keys);
    return { path: ENCRYPTION_CONFIG_FILE, action, provider: a.type, activeKey: a.key.name, keys: allKeyNames(keys) };
  };

  if (existing === undefined) {
    if (op.rotateKey || op.drop) throw new InputError(abs, `does not exist yet: there is no key to rotate or drop; run without --${op.rotateKey ? ROTATE : DROP} first`);
    const recorded = readManifest(dir)?.entries.find((e) => e.id === 'encryption-config');
    if (recorded && !op.replaceLost) {
      throw new InputError(
        abs,
        'is missing, but the manifest shows one was made before. Its key decrypts every Secret the cluster stored; a new key would make them all unreadable. ' +
          'Restore it (every controller has a copy at /var/lib/kubernetes/encryption-config.yaml) and re-run. ' +
          `Only if no kube-apiserver ever used it, pass --${REPLACE_LOST}.`,
      );
    }
    const keys = initialKeys(wanted);
    if (recorded) log.warn('encryption-config', `replacing a lost encryption config with a new key, as --${REPLACE_LOST} asked; Secrets stored with the old key stay unreadable`);
    return { planned: planned(render(keys), 'written'), outcome: outcome(keys, 'written'), nextSteps: [] };
  }

  if (op.replaceLost) throw new InputError(abs, `exists, so nothing is lost: --${REPLACE_LOST} is only for a missing file`);
  let keys: EncryptionKeys;
  try {
    keys = parseEncryptionConfig(existing);
  } catch (e) {
    throw new Error(
      `${abs}: ${(e as Error).message}. Not touching it and not making a new key (a new key would make every stored Secret unreadable): ` +
        'fix the file, or restore it from a controller (/var/lib/kubernetes/encryption-config.yaml).',
    );
  }

  if (op.rotateKey) {
    const r = rotate(keys, wanted);
    const keep = allKeyNames(keys).join(', ');
    const controllers = inv.controllers.map((c) => c.name);
    const next = [
      `${ctx.dryRun ? 'would add' : 'added'} ${r.added.name} (${wanted}) as the first key: kube-apiserver will encrypt new writes with it. ${keep} ${allKeyNames(keys).length === 1 ? 'stays' : 'stay'} after it so existing Secrets remain readable.`,
      'What to do next, in this order:',
      `  1. Send it to every controller (${controllers.join(', ')}): node scripts/05-distribute.mjs --inventory ${ctx.inventoryPath} --dir ${dir}`,
      '  2. Restart kube-apiserver on each controller: sudo systemctl restart kube-apiserver',
      ...(controllers.length > 1
        ? ['     Restart them one right after another: until all have restarted, one still on the old file cannot read Secrets that a restarted one wrote with the new key.']
        : []),
      `  3. Re-encrypt every Secret with ${r.added.name}: kubectl get secrets -A -o json | kubectl replace -f -`,
      `  4. Only then (and after an etcd backup) may a later run with --${DROP} remove ${keep}; removing it earlier makes the Secrets still encrypted with it unreadable.`,
    ];
    return { planned: planned(render(r.keys), 'rewritten', `new first key ${r.added.name}`), outcome: outcome(r.keys, 'rotated'), nextSteps: next };
  }

  if (op.drop) {
    const d = dropOldKeys(keys);
    if (d.dropped.length === 0) {
      log.info('encryption-config', `only ${activeKey(keys).key.name} is listed: no old key to drop`);
      return { planned: planned(existing, 'unchanged'), outcome: outcome(keys, 'unchanged'), nextSteps: [] };
    }
    const active = activeKey(d.keys).key.name;
    const next = [
      `${ctx.dryRun ? 'would drop' : 'dropped'} ${d.dropped.join(', ')}; only ${active} remains. This is safe only if every Secret was rewritten after ${active} became the first key (kubectl get secrets -A -o json | kubectl replace -f -).`,
      `Next: node scripts/05-distribute.mjs --inventory ${ctx.inventoryPath} --dir ${dir}, then restart kube-apiserver on each controller.`,
    ];
    return { planned: planned(render(d.keys), 'rewritten', `dropped ${d.dropped.join(', ')}`), outcome: outcome(d.keys, 'pruned'), nextSteps: next };
  }

  const a = activeKey(keys);
  if (a.type !== wanted) {
    log.warn(
      'encryption-config',
      `the inventory asks for ${wanted} but new Secrets are encrypted with ${a.type} (${a.key.name}); the file is kept as it is. Run with --${ROTATE} to switch: it adds a ${wanted} key in front and keeps the ${a.type} keys for reading.`,
    );
  }
  return { planned: planned(existing, 'unchanged'), outcome: outcome(keys, 'unchanged'), nextSteps: [] };
}

function encryptionHeader(template: Template, keys: EncryptionKeys): string[] {
  const a = activeKey(keys);
  return [
    'encryption-config.yaml: read by kube-apiserver (--encryption-provider-config) on every controller, installed at /var/lib/kubernetes/encryption-config.yaml.',
    `Generated by hardway 04-kubeconfig from ${template.name}; the provider comes from the inventory's encryption.provider.`,
    `New Secrets are encrypted with the first key (${a.key.name}, ${a.type}); every key listed can decrypt; identity reads Secrets stored before encryption was on.`,
    'Re-running never changes the keys. Never remove a key while a Secret may still be encrypted with it: that Secret becomes unreadable.',
    'Keep this file 0600: with it and an etcd backup, anyone can read every Secret.',
  ];
}

function isPrivate(path: string): boolean {
  return !existsSync(path) || (statSync(path).mode & 0o777) === SECRET_MODE;
}

/** Writes one planned file (or says what it would do) and logs one line about it. */
function apply(ctx: Context, p: Planned, details: string): void {
  const abs = join(ctx.dir, p.path);
  const would = ctx.dryRun ? 'would be ' : '';
  if (p.action === 'unchanged') {
    if (p.fixMode) {
      if (!ctx.dryRun) chmodSync(abs, SECRET_MODE);
      ctx.log.info(p.subject, `unchanged; mode ${ctx.dryRun ? 'would be set' : 'set'} to 0600, since it holds a private key: ${p.path}`);
    } else {
      ctx.log.info(p.subject, `unchanged, keeping ${p.path}`);
    }
    return;
  }
  if (!ctx.dryRun) writeFileAtomic(abs, p.text, SECRET_MODE);
  if (p.action === 'written') ctx.log.info(p.subject, `${would}written to ${p.path} (${details})`);
  else ctx.log.info(p.subject, `${would}rewritten: ${p.reason}`);
}
