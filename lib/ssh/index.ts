/**
 * The SSH layer: verified connections to the cluster's hosts, one per host per step, worked in
 * parallel with a bound, with per-host logs, outcomes and a summary. See ./pool.ts for the model
 * and ./session.ts for what a session can do.
 */
export { openSessions, forEachHost, sshOptionsFromFlags, summaryLine, SessionPool, SSH_FLAGS, DEFAULT_PARALLEL } from './pool.ts';
export type { SshOptions, HostOutcome, SshContext } from './pool.ts';
export { Session, RemoteCommandError } from './session.ts';
export type { Target, RunOptions, RunResult, PutOptions, PutResult, Report, ChangeStatus } from './session.ts';
export * as knownHosts from './known-hosts.ts';
