/**
 * The record kept beside each certificate (`issued.json`): what it was made from and the
 * checksums of what was written. It is written last, so a run killed half way leaves a
 * certificate without a matching record, and the next run signs it again. It also lets an
 * unchanged re-run decide "keep" without starting a single process.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { sha256 } from '../fsutil.ts';
import type { CertificateFacts } from '../manifest.ts';
import type { KeyAlgorithm } from '../inventory.ts';
import type { CertRow } from './plan.ts';
import type { Inspected } from './inspect.ts';

/** The parts of a plan row that end up inside the certificate. */
export interface RowFacts {
  cn: string;
  o: string[];
  usages: string[];
  dnsNames: string[];
  ips: string[];
  signer: string;
  profile: string;
}

export interface IssueRecord {
  version: 1;
  id: string;
  tool: string;
  keyAlgorithm: KeyAlgorithm;
  /** The configured validity (pki.certValidity or pki.caValidity) when it was signed. */
  validity: string;
  row: RowFacts;
  /** SHA-256 fingerprint of the CA certificate that signed it. */
  caFingerprint: string;
  certSha256: string;
  keySha256: string;
  facts: CertificateFacts;
  issuedAt: string;
}

export const RECORD_FILE = 'issued.json';

export function rowFacts(row: CertRow): RowFacts {
  return {
    cn: row.cn, o: [...row.o], usages: [...row.usages], dnsNames: [...row.dnsNames], ips: [...row.ips],
    signer: row.signer, profile: row.profile,
  };
}

export function factsOf(got: Inspected): CertificateFacts {
  return {
    cn: got.cn, o: got.o, sans: got.sans, usages: got.extKeyUsage, signer: got.issuerCn, fingerprint: got.fingerprint,
    notBefore: got.notBefore.toISOString(), notAfter: got.notAfter.toISOString(), serial: got.serial, isCa: got.isCa,
    keyAlgorithm: got.keyAlgorithm,
  };
}

export function readRecord(dir: string): IssueRecord | undefined {
  const path = join(dir, RECORD_FILE);
  if (!existsSync(path)) return undefined;
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as IssueRecord;
    return r.version === 1 ? r : undefined;
  } catch {
    return undefined; // torn or hand-edited: treated as absent, so the certificate is made again
  }
}

/** Reads cert.pem and key.pem of a certificate directory; undefined for a missing file. */
export function readPair(dir: string): { cert?: string; key?: string } {
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8') : undefined);
  return { cert: read('cert.pem'), key: read('key.pem') };
}

/** True when the record describes exactly the files on disk. */
export function recordMatchesFiles(rec: IssueRecord, pair: { cert?: string; key?: string }): boolean {
  return pair.cert !== undefined && pair.key !== undefined && sha256(pair.cert) === rec.certSha256 && sha256(pair.key) === rec.keySha256;
}
