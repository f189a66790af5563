/**
 * Reads each instance's SSH host keys from its console output (GetConsoleOutput), polling with a
 * bound until cloud-init has printed them. Hosts whose keys do not appear are reported, never
 * trusted blindly: without a key in known_hosts the later steps refuse to connect.
 */
import { GetConsoleOutputCommand } from '@aws-sdk/client-ec2';
import { mapLimit } from '../exec.ts';
import { isAwsCode, formatMs } from './ec2.ts';
import { parseConsoleOutput, type HostKey } from './consolekeys.ts';
import { pollUntil, TimeoutError } from './wait.ts';
import type { Session } from './resources.ts';

/** The keys found per host, and why the others are missing. */
export interface HostKeyResult {
  keys: Map<string, HostKey[]>;
  /** Host name → why its keys are missing. */
  missing: Map<string, string>;
}

/** Reads the host keys of `hosts` (name and instance id) from their consoles, all in parallel. */
export async function readHostKeys(s: Session, hosts: readonly { name: string; instanceId: string }[]): Promise<HostKeyResult> {
  const result: HostKeyResult = { keys: new Map(), missing: new Map() };
  if (hosts.length > 0) {
    s.log.info('host-keys', `reading ${hosts.map((h) => h.name).join(', ')} from the console output (cloud-init prints the keys 1-3 minutes after boot)`);
  }
  await mapLimit(hosts, hosts.length || 1, async (h) => {
    try {
      const keys = await consoleKeys(s, h.instanceId);
      result.keys.set(h.name, keys);
      s.log.info(h.name, `host keys from the console: ${keys.map((k) => `${k.type} ${k.fingerprint}`).join(', ')}`);
    } catch (e) {
      const message = (e as Error).message;
      result.missing.set(h.name, message);
      s.log.error(h.name, message);
    }
  });
  return result;
}

async function consoleKeys(s: Session, instanceId: string): Promise<HostKey[]> {
  // Latest reads the live serial buffer (Nitro instances); older types only have the buffered copy.
  let latest = true;
  try {
    return await pollUntil(
      async () => {
        let output: string | undefined;
        try {
          output = (await s.ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, ...(latest ? { Latest: true } : {}) }))).Output;
        } catch (e) {
          if (latest && isAwsCode(e, 'UnsupportedOperation', 'InvalidParameterValue', 'InvalidParameterCombination', 'InvalidParameter')) {
            latest = false;
            return undefined;
          }
          throw e;
        }
        if (!output) return undefined;
        try {
          return parseConsoleOutput(Buffer.from(output, 'base64').toString('utf8'));
        } catch (e) {
          throw new Error(`${instanceId}: ${(e as Error).message}`);
        }
      },
      {
        intervalMs: s.timings.consolePollMs,
        timeoutMs: s.timings.consoleTimeoutMs,
        onTimeout: () =>
          `no SSH host keys on the console of ${instanceId} after ${formatMs(s.timings.consoleTimeoutMs)}, so the first SSH connection could not be verified; ` +
          `look for the "BEGIN SSH HOST KEY KEYS" block yourself (aws ec2 get-console-output --region ${s.desired.region} --instance-id ${instanceId} --latest --output text) and run 01-infra again`,
      },
    ).then((parsed) => parsed.keys);
  } catch (e) {
    if (e instanceof TimeoutError) throw e;
    throw new Error((e as Error).message.startsWith(instanceId) ? (e as Error).message : `${instanceId}: ${(e as Error).message}`);
  }
}
