/**
 * 05-distribute on one host, over its one SSH session: survey, decide, install what differs,
 * verify. Reports one line per change or failure keyed by the host; files already in place are
 * counted and summed up in one line.
 */
import { randomBytes } from 'node:crypto';
import type { Session } from '../ssh/index.ts';
import type { HostPlan, PlannedFile } from './plan.ts';
import { surveyScript, parseSurvey, decide, hasWork, installScript, bundle, verifyScript, parseVerify, type Decision } from './remote.ts';

export interface HostEnv {
  dryRun: boolean;
  /** The bytes of a planned file, read from the workspace and checked against the manifest. */
  content(f: PlannedFile): Buffer;
}

export interface FileResult {
  path: string;
  id: string;
  status: 'already' | 'changed' | 'would-change' | 'failed';
  reason?: string;
}

/** What happened on one host (the `value` of its HostOutcome). */
export interface HostResult {
  files: FileResult[];
  dirs: { path: string; mode: string; status: FileResult['status']; reason?: string }[];
  /** Temp files of an interrupted run that were (or would be) removed. */
  leftovers: string[];
  strayKeys: string[];
  /** Absent in a dry run, or when installing failed before verification. */
  verified?: { certificates: number; pairs: number };
}

/** Counts a result without a log line of its own (the host's "N files already in place" line covers it). */
function quietly(s: Session, what: string): void {
  s.reports.push({ what, status: 'already' });
}

export async function distributeToHost(s: Session, plan: HostPlan, env: HostEnv): Promise<HostResult> {
  const survey = parseSurvey((await s.run(surveyScript(plan), { sudo: true })).stdout);
  const d = decide(plan, survey);
  const result: HostResult = { files: [], dirs: [], leftovers: d.leftovers, strayKeys: d.strayKeys };

  for (const k of d.strayKeys) {
    s.report(
      k,
      'failed',
      `a private key that the distribution map does not put on ${s.name} (a ${plan.host.role}); left in place: find out where it came from, remove it and run again`,
    );
  }
  for (const a of d.dirs) {
    if (a.action === 'blocked') {
      s.report(`directory ${a.dir.path}`, 'failed', a.reason);
      result.dirs.push({ path: a.dir.path, mode: a.dir.mode, status: 'failed', reason: a.reason });
    }
  }
  for (const a of d.files) {
    if (a.action === 'blocked') {
      s.report(a.file.path, 'failed', a.reason);
      result.files.push({ path: a.file.path, id: a.file.id, status: 'failed', reason: a.reason });
    }
  }

  const pending = env.dryRun ? 'would-change' : 'changed';
  if (!env.dryRun && hasWork(d)) {
    const tag = randomBytes(4).toString('hex');
    const script = installScript(plan, d, tag);
    await s.run(script, { sudo: true, stdin: bundle(d, env.content, tag) });
  }
  record(s, d, result, pending);

  if (env.dryRun) return result;
  if (plan.files.length === 0) {
    s.info(`receives nothing; ${d.strayKeys.length === 0 ? 'no stray private keys' : `${d.strayKeys.length} stray private key(s)`} under the managed directories`);
    result.verified = { certificates: 0, pairs: 0 };
    return result;
  }
  const v = parseVerify((await s.run(verifyScript(plan), { sudo: true })).stdout, plan);
  for (const p of v.problems) s.report('verify', 'failed', p);
  result.verified = { certificates: v.certificates, pairs: v.pairs };
  if (v.problems.length === 0) {
    const strays = d.strayKeys.length === 0 ? 'no stray private keys' : `${d.strayKeys.length} stray private key(s)`;
    s.info(`verified on the host: ${v.certificates} certificate(s) against the installed CAs (openssl verify), ${v.pairs} private key(s) match their certificate, ${strays}`);
  }
  return result;
}

/** Reports what the install did (or, in a dry run, would do), in the order it happens. */
function record(s: Session, d: Decision, result: HostResult, status: 'changed' | 'would-change'): void {
  for (const a of d.dirs) {
    if (a.action === 'blocked') continue;
    if (a.action === 'already') quietly(s, `directory ${a.dir.path}`);
    else s.report(`directory ${a.dir.path}`, status, a.reason);
    result.dirs.push({ path: a.dir.path, mode: a.dir.mode, status: a.action === 'already' ? 'already' : status, ...(a.action !== 'already' ? { reason: a.reason } : {}) });
  }
  for (const l of d.leftovers) s.report(`leftover temp file ${l}`, status, 'from an interrupted run: removed');
  let already = 0;
  for (const a of d.files) {
    if (a.action === 'blocked') continue;
    if (a.action === 'already') {
      already++;
      quietly(s, a.file.path);
      result.files.push({ path: a.file.path, id: a.file.id, status: 'already' });
    } else {
      s.report(a.file.path, status, a.action === 'upload' ? `${a.reason}; ${a.file.mode}, sha256 ${a.file.sha256.slice(0, 12)}` : a.reason);
      result.files.push({ path: a.file.path, id: a.file.id, status, reason: a.reason });
    }
  }
  if (already > 0) s.info(`${already} file(s) already in place (same SHA-256, mode and owner root)`);
}
