/**
 * What a signing backend (cfssl or openssl) is asked to do, and what it hands back. A backend
 * runs the real binary in the certificate's own directory, with paths relative to it, so that
 * the transcript it returns can be pasted into a shell from that directory.
 */
import { join, relative } from 'node:path';
import type { KeyAlgorithm } from '../inventory.ts';
import type { Logger } from '../log.ts';
import { exec, type ExecResult } from '../exec.ts';
import { writeFileAtomic } from '../fsutil.ts';
import type { CertRow } from './plan.ts';

export interface SignRequest {
  row: CertRow;
  keyAlgorithm: KeyAlgorithm;
  /** Lifetime to ask for, already clamped so the certificate cannot outlive its CA. */
  validityMs: number;
  /** `<dir>/pki`: every certificate has its own directory below it. */
  pkiDir: string;
  /** CA only: key.pem already exists (an interrupted run); make the certificate from it. */
  reuseKey: boolean;
  /** One line for the header of generated files. */
  header: string;
  now: Date;
  log?: Logger;
}

export interface Issued {
  /** The new private key; absent when an existing CA key was reused. */
  keyPem?: string;
  certPem: string;
  /** Shell lines that reproduce what was run, from the certificate's directory. */
  transcript: string[];
  /** Files the backend wrote beside the certificate (rendered templates, CSR). */
  files: string[];
}

export interface Backend {
  readonly name: 'cfssl' | 'openssl';
  /** The template under templates/ that `issue` renders for this row (named in headers and transcripts). */
  templateFor(row: CertRow): string;
  issue(req: SignRequest): Promise<Issued>;
}

/** Runs one command in the certificate's directory and records it, with where its stdout went. */
export class Recorder {
  readonly transcript: string[] = [];
  constructor(
    readonly cwd: string,
    private readonly subject: string,
    private readonly log?: Logger,
  ) {}

  /**
   * `stdoutTo` names the file the output ends up in (for the transcript); `secret` marks output
   * that is a private key, shown in the transcript under `umask 077` as a person should type it.
   */
  async run(cmd: string, args: string[], stdoutTo: string | null, opts: { env?: Record<string, string>; secret?: boolean } = {}): Promise<ExecResult> {
    const res = await exec(cmd, args, { cwd: this.cwd, subject: this.subject, env: opts.env && { ...process.env, ...opts.env } }, this.log);
    const line = stdoutTo ? `${res.commandLine} > ${stdoutTo}` : res.commandLine;
    this.transcript.push(opts.secret ? `(umask 077 && ${line})` : line);
    return res;
  }

  note(line: string): void {
    this.transcript.push(line);
  }

  /** Writes a generated file (template, CSR) into the certificate's directory; it is regenerated if lost. */
  write(name: string, text: string): void {
    writeFileAtomic(join(this.cwd, name), text, 0o644, false);
  }
}

export function certDir(pkiDir: string, id: string): string {
  return join(pkiDir, id);
}

/** Path of the signer's file as seen from the certificate's directory: "../kubernetes-ca/cert.pem". */
export function signerFile(req: SignRequest, file: 'cert.pem' | 'key.pem'): string {
  return relative(certDir(req.pkiDir, req.row.id), join(req.pkiDir, req.row.signer, file));
}

/** keyUsage values for a leaf: keyEncipherment only makes sense for RSA key transport. */
export function leafKeyUsage(alg: KeyAlgorithm): string[] {
  return alg.startsWith('rsa') ? ['digitalSignature', 'keyEncipherment'] : ['digitalSignature'];
}

/**
 * The validity window both backends use: from the current minute less five minutes (cfssl's own
 * backdating, so clocks a little behind still accept a fresh certificate) for `validityMs`.
 */
export function validityWindow(now: Date, validityMs: number): { notBefore: Date; notAfter: Date } {
  const minute = 60_000;
  const notBefore = new Date(Math.round(now.getTime() / minute) * minute - 5 * minute);
  return { notBefore, notAfter: new Date(notBefore.getTime() + validityMs) };
}
