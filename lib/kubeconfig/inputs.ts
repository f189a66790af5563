/**
 * The inputs of each kubeconfig, recorded in `<dir>/kubeconfigs/inputs.json` (checksums and
 * addresses, never key material) so that a re-run can say in one line why it rewrites a file:
 * "kube-proxy: server changed (https://10.240.0.5:6443 -> https://10.240.0.6:6443)".
 *
 * Whether to rewrite is decided by content alone (the rendered bytes differ from the file);
 * this record only explains why.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../fsutil.ts';
import { INPUTS_FILE } from './plan.ts';

export interface KubeconfigInputs {
  readonly server: string;
  readonly cluster: string;
  readonly user: string;
  /** sha256 of the CA certificate, client certificate and client key PEM files. */
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** sha256 of the template text. */
  readonly template: string;
}

export interface KubeconfigRecord extends KubeconfigInputs {
  /** sha256 of the file as written. */
  readonly output: string;
}

export interface InputsFile {
  readonly version: 1;
  readonly kubeconfigs: Readonly<Record<string, KubeconfigRecord>>;
}

export function readInputs(dir: string): InputsFile {
  const path = join(dir, INPUTS_FILE);
  if (!existsSync(path)) return { version: 1, kubeconfigs: {} };
  try {
    const f = JSON.parse(readFileSync(path, 'utf8')) as InputsFile;
    if (f.version !== 1 || typeof f.kubeconfigs !== 'object' || f.kubeconfigs === null) throw new Error('unexpected layout');
    return f;
  } catch {
    // Only explanations are lost: the rewrite decision does not depend on this file.
    return { version: 1, kubeconfigs: {} };
  }
}

export function writeInputs(dir: string, kubeconfigs: Record<string, KubeconfigRecord>): void {
  const sorted = Object.fromEntries(Object.entries(kubeconfigs).sort(([a], [b]) => a.localeCompare(b)));
  writeFileAtomic(join(dir, INPUTS_FILE), `${JSON.stringify({ version: 1, kubeconfigs: sorted } satisfies InputsFile, null, 2)}\n`, 0o644);
}

/**
 * Why a kubeconfig whose content differs from the file on disk must be rewritten, as one line.
 * `existingSha` is the sha256 of the file now on disk.
 */
export function rewriteReason(old: KubeconfigRecord | undefined, now: KubeconfigInputs, existingSha: string): string {
  if (!old) return 'content differs and there is no record of the inputs it was made from';
  const reasons: string[] = [];
  if (old.server !== now.server) reasons.push(`server changed (${old.server} -> ${now.server})`);
  if (old.cluster !== now.cluster) reasons.push(`cluster name changed (${old.cluster} -> ${now.cluster})`);
  if (old.user !== now.user) reasons.push(`user changed (${old.user} -> ${now.user})`);
  if (old.ca !== now.ca) reasons.push('CA certificate changed');
  if (old.cert !== now.cert && old.key !== now.key) reasons.push('client certificate and key changed');
  else if (old.cert !== now.cert) reasons.push('client certificate changed');
  else if (old.key !== now.key) reasons.push('client key changed');
  if (old.template !== now.template) reasons.push('template changed');
  if (reasons.length > 0) return reasons.join('; ');
  if (old.output !== existingSha) return 'the file differs from what 04-kubeconfig wrote (edited by hand?)';
  return 'content differs from what the same inputs render';
}
