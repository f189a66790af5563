/**
 * Re-run rules for a leaf certificate, as a pure function: keep it when its plan row is
 * unchanged and it is still valid for its CA; otherwise sign it again, with a one-line reason.
 */
import type { IssueRecord, RowFacts } from './records.ts';

export type Decision = { action: 'keep' } | { action: 'sign'; reason: string };

export interface DecisionInput {
  want: RowFacts;
  keyAlgorithm: string;
  validity: string;
  /** The record beside the certificate, when it matches the files on disk. */
  record: IssueRecord | undefined;
  /** Whether a certificate directory exists at all (a missing record then means an interrupted run). */
  exists: boolean;
  caFingerprint: string;
  now: Date;
  /** Re-sign when less than this is left. */
  renewBeforeMs: number;
}

function listDiff(label: string, had: readonly string[], want: readonly string[]): string | undefined {
  const added = want.filter((x) => !had.includes(x));
  const removed = had.filter((x) => !want.includes(x));
  if (added.length === 0 && removed.length === 0) return undefined;
  return `${label} changed (${[...added.map((a) => `+${a}`), ...removed.map((r) => `-${r}`)].join(' ')})`;
}

export function decideLeaf(d: DecisionInput): Decision {
  if (!d.exists) return { action: 'sign', reason: 'new' };
  const r = d.record;
  if (!r) return { action: 'sign', reason: 'incomplete or changed on disk (no matching issued.json; an interrupted run?)' };
  const changes = [
    r.row.cn !== d.want.cn ? `CN changed (${r.row.cn} -> ${d.want.cn})` : undefined,
    listDiff('O', r.row.o, d.want.o),
    listDiff('SANs', [...r.row.dnsNames, ...r.row.ips], [...d.want.dnsNames, ...d.want.ips]),
    listDiff('usages', r.row.usages, d.want.usages),
    r.row.signer !== d.want.signer ? `signer changed (${r.row.signer} -> ${d.want.signer})` : undefined,
    r.keyAlgorithm !== d.keyAlgorithm ? `key algorithm changed (${r.keyAlgorithm} -> ${d.keyAlgorithm})` : undefined,
    r.validity !== d.validity ? `validity changed (${r.validity} -> ${d.validity})` : undefined,
  ].filter((x): x is string => x !== undefined);
  if (changes.length) return { action: 'sign', reason: changes.join('; ') };
  if (r.caFingerprint !== d.caFingerprint) return { action: 'sign', reason: `signed by a different ${d.want.signer} (the CA was replaced)` };
  const left = new Date(r.facts.notAfter).getTime() - d.now.getTime();
  if (left < d.renewBeforeMs) {
    const when = left <= 0 ? 'expired' : `expires in ${Math.ceil(left / 3_600_000)}h`;
    return { action: 'sign', reason: `${when} (${r.facts.notAfter})` };
  }
  return { action: 'keep' };
}

/** Renew when less than a tenth of the lifetime, capped at 30 days, is left. */
export function renewBefore(validityMs: number): number {
  return Math.min(validityMs / 10, 30 * 24 * 3_600_000);
}
