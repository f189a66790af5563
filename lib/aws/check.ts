/**
 * `--check`: proves, before anything exists, that the credentials may make every call `up` and
 * `destroy` will make. Reads run for real (they are needed to know what exists); every mutating
 * call runs with EC2's DryRun flag, whose answer is DryRunOperation when allowed and
 * UnauthorizedOperation when not. Nothing is created and nothing is written.
 */
import { awsErrorCode, isAwsCode } from './ec2.ts';
import { ROWS, type Probe, type Session } from './resources.ts';

/** How one probe came out. `unproven`: EC2 answered something else (often a placeholder id it does not know). */
export interface ProbeResult {
  action: string;
  subject: string;
  status: 'allowed' | 'denied' | 'unproven';
  detail?: string;
}

/** What --check found: ok unless some call was denied. */
export interface CheckReport {
  ok: boolean;
  results: ProbeResult[];
}

/** Interprets a DryRun call's outcome. */
export async function runProbe(p: Probe): Promise<ProbeResult> {
  try {
    await p.call();
    return { action: p.action, subject: p.subject, status: 'unproven', detail: 'EC2 accepted a DryRun call without answering DryRunOperation' };
  } catch (e) {
    if (isAwsCode(e, 'DryRunOperation')) return { action: p.action, subject: p.subject, status: 'allowed' };
    if (isAwsCode(e, 'UnauthorizedOperation', 'AccessDenied', 'AccessDeniedException')) {
      return { action: p.action, subject: p.subject, status: 'denied', detail: (e as Error).message };
    }
    if (isAwsCode(e, 'AuthFailure', 'CredentialsProviderError')) throw e;
    return { action: p.action, subject: p.subject, status: 'unproven', detail: `${awsErrorCode(e) ?? 'error'}: ${(e as Error).message}` };
  }
}

/** Runs every row's lookups and DryRun probes; logs one line per action and a summary. */
export async function preflight(s: Session): Promise<CheckReport> {
  const results: ProbeResult[] = [];
  for (const row of ROWS) {
    try {
      await row.find(s);
    } catch (e) {
      if (isAwsCode(e, 'UnauthorizedOperation', 'AccessDenied')) {
        results.push({ action: (e as { action?: string }).action ?? `lookup for ${row.role}`, subject: row.role, status: 'denied', detail: (e as Error).message });
        continue;
      }
      if (isAwsCode(e, 'AuthFailure', 'CredentialsProviderError')) throw e;
      // A lookup that fails for another reason (no Ubuntu image, say) is what `up` would hit too.
      results.push({ action: `lookup for ${row.role}`, subject: row.role, status: 'unproven', detail: (e as Error).message });
      continue;
    }
    for (const probe of row.probes(s)) results.push(await runProbe(probe));
  }
  for (const r of results) {
    if (r.status === 'allowed') s.log.info('check', `${r.action}: allowed`);
    else if (r.status === 'denied') s.log.error('check', `${r.action}: denied (${r.detail})`);
    else s.log.warn('check', `${r.action}: not proven (${r.detail})`);
  }
  const denied = results.filter((r) => r.status === 'denied');
  const unproven = results.filter((r) => r.status === 'unproven');
  const allowed = results.length - denied.length - unproven.length;
  s.log.info(
    'check',
    `${allowed} of ${results.length} calls allowed` +
      (denied.length ? `; denied: ${denied.map((r) => r.action).join(', ')}` : '') +
      (unproven.length ? `; not proven: ${unproven.map((r) => r.action).join(', ')}` : '') +
      '; nothing was created or changed',
  );
  return { ok: denied.length === 0, results };
}
