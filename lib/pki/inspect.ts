/**
 * Reads issued certificates back with the real openssl binary and compares each with its plan
 * row. cfssl 1.2.0 drops unknown usages, falls back on unknown profiles and can exit 0 with no
 * output (MISSION.md §6), so nothing is accepted on a tool's word.
 *
 * Checking is batched: one `openssl storeutl -text` reads every new certificate of a run and one
 * `openssl verify` per CA checks their signatures, instead of two processes per certificate.
 */
import { createPrivateKey, createPublicKey, X509Certificate, randomBytes } from 'node:crypto';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { exec } from '../exec.ts';
import type { Logger } from '../log.ts';
import type { KeyAlgorithm } from '../inventory.ts';
import { sansOf, type CertRow } from './plan.ts';

export interface Inspected {
  cn: string;
  o: string[];
  issuerCn: string;
  /** Upper-case hex, no separators, as `openssl x509 -serial` prints it. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256 of the DER, colon-separated upper-case hex (as `openssl x509 -fingerprint -sha256`). */
  fingerprint: string;
  /** "DNS:x" / "IP:y" */
  sans: string[];
  /** openssl's short names: serverAuth, clientAuth. */
  extKeyUsage: string[];
  /** openssl's long names: "Digital Signature", "Certificate Sign", ... */
  keyUsage: string[];
  isCa: boolean;
  /** "rsa-2048", "ecdsa-p256", or what openssl reports. */
  keyAlgorithm: string;
}

/** Prints each certificate of a PEM bundle as text. */
export const STOREUTL_ARGS = ['storeutl', '-noout', '-text', '-certs'];

const EKU_NAMES: Record<string, string> = {
  'TLS Web Server Authentication': 'serverAuth',
  'TLS Web Client Authentication': 'clientAuth',
};

/** Splits a name as openssl prints it by default ("O=a, CN=b") into attribute/value pairs. */
function parseName(dn: string): [string, string][] {
  return dn
    .split(/, (?=[A-Za-z][A-Za-z0-9.]*=)/)
    .filter(Boolean)
    .map((ava) => {
      const at = ava.indexOf('=');
      return [ava.slice(0, at).trim(), ava.slice(at + 1).replace(/\\(.)/g, '$1')];
    });
}

/** Parses one certificate's block of `openssl storeutl -text` (or `x509 -text`) output. */
export function parseCertificateText(block: string, der: Buffer): Inspected {
  const line = (label: string): string => {
    const m = new RegExp(`^\\s*${label}\\s*:(.*)$`, 'm').exec(block);
    if (!m) throw new Error(`openssl output has no "${label}"`);
    return m[1]!.trim();
  };
  const ext = (title: string): string | undefined => {
    const m = new RegExp(`^(\\s*)X509v3 ${title}:.*\\n((?:\\1\\s+.*(?:\\n|$))+)`, 'm').exec(block);
    return m ? m[2]!.trim() : undefined;
  };
  const list = (s: string | undefined) => (s ? s.split(/,\s*/).map((x) => x.trim()).filter(Boolean) : []);
  const serialInline = /Serial Number:\s*(\d+) \(0x([0-9a-f]+)\)/i.exec(block);
  const serialHex = serialInline ? serialInline[2]! : /Serial Number:\s*\n\s*([0-9a-f:]+)/i.exec(block)?.[1] ?? '';
  const subject = parseName(line('Subject'));
  const issuer = parseName(line('Issuer'));
  const bits = /Public-Key: \((\d+) bit\)/.exec(block)?.[1];
  const keyType = line('Public Key Algorithm');
  const curve = /NIST CURVE: (\S+)/.exec(block)?.[1];
  const keyAlgorithm = keyType === 'rsaEncryption' ? `rsa-${bits}` : keyType === 'id-ecPublicKey' && curve === 'P-256' ? 'ecdsa-p256' : `${keyType}-${curve ?? bits}`;
  const digest = new X509Certificate(der).fingerprint256;
  return {
    cn: subject.filter(([k]) => k === 'CN').map(([, v]) => v).join(),
    o: subject.filter(([k]) => k === 'O').map(([, v]) => v),
    issuerCn: issuer.filter(([k]) => k === 'CN').map(([, v]) => v).join(),
    serial: serialHex.replace(/:/g, '').toUpperCase(),
    notBefore: new Date(line('Not Before')),
    notAfter: new Date(line('Not After')),
    fingerprint: digest,
    sans: list(ext('Subject Alternative Name')).map((s) => s.replace(/^IP Address:/, 'IP:')),
    extKeyUsage: list(ext('Extended Key Usage')).map((u) => EKU_NAMES[u] ?? u),
    keyUsage: list(ext('Key Usage')),
    isCa: /CA:TRUE/.test(ext('Basic Constraints') ?? ''),
    keyAlgorithm,
  };
}

/**
 * Reads every certificate in `pems` with one openssl process; results keep the input order.
 * storeutl cannot read a pipe, so the bundle goes through a scratch file in `scratchDir`
 * (certificates only: nothing secret), named `.check-*.tmp` so a killed run's sweep removes it.
 */
export async function inspectCertificates(pems: readonly string[], scratchDir: string, log?: Logger): Promise<Inspected[]> {
  if (pems.length === 0) return [];
  const bundle = join(scratchDir, `.check-${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  let res;
  try {
    writeFileSync(bundle, pems.join(''));
    res = await exec('openssl', [...STOREUTL_ARGS, bundle], { subject: `${pems.length} certificate(s)` }, log);
  } finally {
    rmSync(bundle, { force: true });
  }
  const blocks = res.stdout.split(/^\d+: Certificate\s*$/m).slice(1);
  if (blocks.length !== pems.length) {
    throw new Error(`openssl read ${blocks.length} certificate(s) where ${pems.length} were given: one of them is not a certificate`);
  }
  return blocks.map((b, i) => parseCertificateText(b, new X509Certificate(pems[i]!).raw));
}

/**
 * `openssl verify -CAfile <ca> <file>...`: which of `files` chain to the CA. One process for all.
 * Returns the set of files openssl accepted.
 */
export async function verifyChains(files: readonly string[], caFile: string, log?: Logger, cwd?: string): Promise<Set<string>> {
  if (files.length === 0) return new Set();
  const res = await exec('openssl', ['verify', '-CAfile', caFile, ...files], { cwd, subject: caFile, okCodes: [2] }, log);
  const ok = new Set<string>();
  for (const m of res.stdout.matchAll(/^(.*): OK$/gm)) ok.add(m[1]!);
  return ok;
}

/** Describes a private key: "rsa-2048", "ecdsa-p256" or what it really is. */
export function keyAlgorithmOf(keyPem: string): string {
  const k = createPrivateKey(keyPem);
  const d = k.asymmetricKeyDetails ?? {};
  if (k.asymmetricKeyType === 'rsa') return `rsa-${d.modulusLength}`;
  if (k.asymmetricKeyType === 'ec') return d.namedCurve === 'prime256v1' ? 'ecdsa-p256' : `ecdsa-${d.namedCurve}`;
  return String(k.asymmetricKeyType);
}

export function publicKeyOf(keyPem: string): string {
  return createPublicKey(keyPem).export({ type: 'spki', format: 'pem' }).toString().trim();
}

/** True when the certificate carries the public half of `keyPem`. */
export function certMatchesKey(certPem: string, keyPem: string): boolean {
  return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
}

export interface Expectation {
  row: CertRow;
  keyAlgorithm: KeyAlgorithm;
  /** The signing CA's notAfter: no certificate may outlive its CA. */
  caNotAfter: Date;
  /** Planned lifetime, already clamped to the CA. */
  validityMs: number;
}

const SLACK_MS = 15 * 60_000; // backdating and rounding to the minute by the signing tools

/** Every way `got` differs from the plan; empty when the certificate is exactly what was planned. */
export function compareWithPlan(got: Inspected, want: Expectation): string[] {
  const { row } = want;
  const problems: string[] = [];
  const isCa = row.profile === 'ca';
  const eq = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sameSet = (a: readonly string[], b: readonly string[]) => eq([...a].sort(), [...b].sort());
  if (got.cn !== row.cn) problems.push(`CN is "${got.cn}", expected "${row.cn}"`);
  if (!eq(got.o, row.o)) problems.push(`O is [${got.o.join(', ')}], expected [${row.o.join(', ')}]`);
  if (got.issuerCn !== row.signer) problems.push(`issuer is "${got.issuerCn}", expected "${row.signer}"`);
  if (!sameSet(got.sans, sansOf(row))) problems.push(`SANs are [${got.sans.join(', ')}], expected [${sansOf(row).join(', ')}]`);
  if (!sameSet(got.extKeyUsage, row.usages)) problems.push(`extended key usage is [${got.extKeyUsage.join(', ')}], expected [${row.usages.join(', ')}]`);
  const wantKu = isCa
    ? ['Certificate Sign', 'CRL Sign']
    : want.keyAlgorithm.startsWith('rsa') ? ['Digital Signature', 'Key Encipherment'] : ['Digital Signature'];
  if (!sameSet(got.keyUsage, wantKu)) problems.push(`key usage is [${got.keyUsage.join(', ')}], expected [${wantKu.join(', ')}]`);
  if (got.isCa !== isCa) problems.push(`CA:${got.isCa ? 'TRUE' : 'FALSE'}, expected CA:${isCa ? 'TRUE' : 'FALSE'}`);
  if (got.keyAlgorithm !== want.keyAlgorithm) problems.push(`key is ${got.keyAlgorithm}, expected ${want.keyAlgorithm}`);
  if (got.notAfter.getTime() > want.caNotAfter.getTime()) {
    problems.push(`notAfter ${got.notAfter.toISOString()} is past its CA's notAfter ${want.caNotAfter.toISOString()}`);
  }
  const lifetime = got.notAfter.getTime() - got.notBefore.getTime();
  if (Math.abs(lifetime - want.validityMs) > SLACK_MS + 3_600_000) {
    problems.push(`lifetime is ${Math.round(lifetime / 3_600_000)}h, expected ${Math.round(want.validityMs / 3_600_000)}h`);
  }
  return problems;
}
