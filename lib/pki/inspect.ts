/**
 * Reads an issued certificate back with the real openssl binary and compares it with its plan
 * row. cfssl 1.2.0 drops unknown usages, falls back on unknown profiles and can exit 0 with no
 * output (MISSION.md §6), so nothing is accepted on a tool's word: every certificate is checked
 * here before it is written into place.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { exec } from '../exec.ts';
import type { Logger } from '../log.ts';
import type { KeyAlgorithm } from '../inventory.ts';
import { sansOf, type CertRow } from './plan.ts';

export interface Inspected {
  cn: string;
  o: string[];
  issuerCn: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** SHA-256, colon-separated hex, as openssl prints it. */
  fingerprint: string;
  /** "DNS:x" / "IP:y" */
  sans: string[];
  /** openssl's short names: serverAuth, clientAuth. */
  extKeyUsage: string[];
  /** openssl's long names: "Digital Signature", "Certificate Sign", ... */
  keyUsage: string[];
  isCa: boolean;
  publicKeyPem: string;
}

/** The openssl command that reads the fields we check; the cert PEM goes on stdin. */
export const INSPECT_ARGS = [
  'x509', '-noout', '-subject', '-issuer', '-serial', '-startdate', '-enddate', '-fingerprint', '-sha256',
  '-nameopt', 'RFC2253', '-ext', 'subjectAltName,keyUsage,extendedKeyUsage,basicConstraints', '-pubkey',
];

const EKU_NAMES: Record<string, string> = {
  'TLS Web Server Authentication': 'serverAuth',
  'TLS Web Client Authentication': 'clientAuth',
};

/** Splits an RFC 2253 name into attribute/value pairs, honouring backslash escapes. */
function parseRfc2253(dn: string): [string, string][] {
  const out: [string, string][] = [];
  let cur = '';
  for (let i = 0; i < dn.length; i++) {
    const ch = dn[i]!;
    if (ch === '\\' && i + 1 < dn.length) {
      cur += dn[++i];
    } else if (ch === ',' || ch === '+') {
      out.push(splitAva(cur));
      cur = '';
    } else cur += ch;
  }
  if (cur) out.push(splitAva(cur));
  return out;
}

function splitAva(ava: string): [string, string] {
  const at = ava.indexOf('=');
  return [ava.slice(0, at).trim(), ava.slice(at + 1)];
}

/** Parses the output of `openssl ${INSPECT_ARGS}`. */
export function parseInspectOutput(text: string): Inspected {
  const field = (name: string): string => {
    const m = new RegExp(`^${name}=(.*)$`, 'm').exec(text);
    if (!m) throw new Error(`openssl output has no ${name}`);
    return m[1]!.trim();
  };
  const ext = (title: string): string | undefined => {
    const m = new RegExp(`^X509v3 ${title}:.*\\n((?:    .*\\n?)+)`, 'm').exec(text);
    return m ? m[1]!.trim() : undefined;
  };
  const subject = parseRfc2253(field('subject'));
  const issuer = parseRfc2253(field('issuer'));
  const list = (s: string | undefined) => (s ? s.split(/,\s*/).map((x) => x.trim()).filter(Boolean) : []);
  const pub = /-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/.exec(text);
  if (!pub) throw new Error('openssl output has no public key');
  return {
    // RFC 2253 lists the name from its last attribute; reverse to the order in the certificate.
    cn: subject.filter(([k]) => k === 'CN').map(([, v]) => v).join(),
    o: subject.filter(([k]) => k === 'O').map(([, v]) => v).reverse(),
    issuerCn: issuer.filter(([k]) => k === 'CN').map(([, v]) => v).join(),
    serial: field('serial'),
    notBefore: new Date(field('notBefore')),
    notAfter: new Date(field('notAfter')),
    fingerprint: field('sha256 Fingerprint'),
    sans: list(ext('Subject Alternative Name')).map((s) => s.replace(/^IP Address:/, 'IP:')),
    extKeyUsage: list(ext('Extended Key Usage')).map((u) => EKU_NAMES[u] ?? u),
    keyUsage: list(ext('Key Usage')),
    isCa: /CA:TRUE/.test(ext('Basic Constraints') ?? ''),
    publicKeyPem: pub[0],
  };
}

export async function inspectCertificate(pem: string, log?: Logger, subject?: string): Promise<Inspected> {
  const res = await exec('openssl', INSPECT_ARGS, { input: pem, subject }, log);
  return parseInspectOutput(res.stdout);
}

/** `openssl verify -CAfile <ca> ` with the certificate on stdin. Resolves true when it chains. */
export async function verifyChain(pem: string, caFile: string, log?: Logger, subject?: string): Promise<boolean> {
  const res = await exec('openssl', ['verify', '-CAfile', caFile], { input: pem, subject, okCodes: [2] }, log);
  return res.code === 0 && /^stdin: OK$/m.test(res.stdout);
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

export interface Expectation {
  row: CertRow;
  keyAlgorithm: KeyAlgorithm;
  keyPem: string;
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
  const alg = keyAlgorithmOf(want.keyPem);
  if (alg !== want.keyAlgorithm) problems.push(`key is ${alg}, expected ${want.keyAlgorithm}`);
  if (publicKeyOf(want.keyPem) !== got.publicKeyPem.trim()) problems.push('certificate does not match its private key');
  if (got.notAfter.getTime() > want.caNotAfter.getTime()) {
    problems.push(`notAfter ${got.notAfter.toISOString()} is past its CA's notAfter ${want.caNotAfter.toISOString()}`);
  }
  const lifetime = got.notAfter.getTime() - got.notBefore.getTime();
  if (Math.abs(lifetime - want.validityMs) > SLACK_MS + 3_600_000) {
    problems.push(`lifetime is ${Math.round(lifetime / 3_600_000)}h, expected ${Math.round(want.validityMs / 3_600_000)}h`);
  }
  return problems;
}
