/**
 * 01-infra's providers: where the machines come from. `aws` makes EC2 instances, `lab` makes
 * network namespaces running real sshd on this machine. Both leave the same things behind in the
 * workspace so that every later step works unchanged:
 *   - `<dir>/infra/hosts.json` (DiscoveredHosts in lib/inventory.ts): public IPs, instance ids
 *   - `<dir>/ssh/id_ed25519` (0600) and `.pub`: the key the steps log in with
 *   - `<dir>/ssh/known_hosts`: every host's key, so the first SSH connection is verified
 *   - `<dir>/infra/ssh.json` (SshTargets): how to reach each host (address, port, user)
 */
import type { Context, StepResult } from '../runner.ts';

export interface InfraProvider {
  /** Create what is missing, keep what exists, record what was found. */
  up(ctx: Context): Promise<StepResult>;
  /** Remove exactly what this cluster created; safe to re-run. */
  destroy(ctx: Context): Promise<StepResult>;
  /** Pre-flight: prove we may do everything, change nothing. */
  check(ctx: Context): Promise<StepResult>;
}

/** How to reach each host over SSH, written by the provider, read by the SSH layer. */
export interface SshTargets {
  hosts: Record<string, { address: string; port: number; user: string }>;
}

export const SSH_TARGETS_FILE = 'infra/ssh.json';
export const SSH_KEY_FILE = 'ssh/id_ed25519';
export const KNOWN_HOSTS_FILE = 'ssh/known_hosts';
