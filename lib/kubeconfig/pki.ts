/**
 * What 04-kubeconfig takes from 03-pki: the certificates and keys named in the workspace
 * manifest. Paths come from the manifest (never guessed), each file must still match the
 * checksum 03-pki recorded, and each certificate is checked for what the API server will make of
 * it (user, group, signer, clientAuth, matching key) before it is embedded anywhere.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { InputError } from '../errors.ts';
import { sha256 } from '../fsutil.ts';
import { readManifest, MANIFEST_FILE, type Manifest } from '../manifest.ts';
import { APISERVER_CERT_ID, CLUSTER_CA_ID, type KubeconfigPlan } from './plan.ts';

/** One file from 03-pki, as read now. */
export interface PkiFile {
  /** Manifest id, e.g. "kube-proxy/cert". */
  readonly id: string;
  /** Relative to the workspace. */
  readonly path: string;
  readonly text: string;
  readonly sha256: string;
}

export interface Credentials {
  readonly cert: PkiFile;
  readonly key: PkiFile;
  readonly x509: X509Certificate;
}

export interface PkiInputs {
  readonly ca: PkiFile;
  readonly apiserver: X509Certificate;
  /** Relative to the workspace. */
  readonly apiserverPath: string;
  /** By 03-pki id ("admin", "kubelet-worker-0", ...). */
  readonly credentials: ReadonlyMap<string, Credentials>;
  /** Certificates that expire soon or already did: worth a warning, not a failure. */
  readonly expiring: readonly string[];
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const SOON_MS = 30 * 24 * 3600 * 1000;
const RUN_PKI = 'run 03-pki first (node scripts/03-pki.mjs with the same --inventory and --dir)';

/** Reads and checks everything `plan` needs. Throws InputError naming the file and the fix. */
export function readPkiInputs(dir: string, plan: readonly KubeconfigPlan[], now = new Date()): PkiInputs {
  const manifestPath = join(dir, MANIFEST_FILE);
  let manifest: Manifest | undefined;
  try {
    manifest = readManifest(dir);
  } catch (e) {
    throw new InputError(manifestPath, `cannot be read (${(e as Error).message}); ${RUN_PKI}`);
  }
  if (!manifest) throw new InputError(manifestPath, `not found: the workspace has no certificates yet; ${RUN_PKI}`);
  const m = manifest;

  const file = (id: string): PkiFile => {
    const entry = m.entries.find((e) => e.id === id && e.step === '03-pki');
    if (!entry) throw new InputError(manifestPath, `has no entry "${id}" from 03-pki; ${RUN_PKI}`);
    const abs = join(dir, entry.path);
    if (!existsSync(abs)) throw new InputError(abs, `is listed in the manifest as "${id}" but missing; ${RUN_PKI}`);
    const text = readFileSync(abs, 'utf8');
    const sum = sha256(text);
    if (sum !== entry.sha256) {
      throw new InputError(abs, `does not match the checksum 03-pki recorded in the manifest (changed since?); re-run 03-pki`);
    }
    return { id, path: entry.path, text, sha256: sum };
  };
  const x509 = (f: PkiFile): X509Certificate => {
    try {
      return new X509Certificate(f.text);
    } catch (e) {
      throw new InputError(join(dir, f.path), `is not a readable certificate (${(e as Error).message}); re-run 03-pki`);
    }
  };

  const ca = file(`${CLUSTER_CA_ID}/cert`);
  const caX509 = x509(ca);
  const apiserverFile = file(`${APISERVER_CERT_ID}/cert`);
  const apiserver = x509(apiserverFile);
  const expiring: string[] = [];
  const noteExpiry = (what: string, c: X509Certificate) => {
    const end = new Date(c.validTo);
    if (end.getTime() < now.getTime()) expiring.push(`${what} expired on ${end.toISOString()}`);
    else if (end.getTime() - now.getTime() < SOON_MS) expiring.push(`${what} expires on ${end.toISOString()}`);
  };
  noteExpiry(CLUSTER_CA_ID, caX509);
  noteExpiry(APISERVER_CERT_ID, apiserver);

  const credentials = new Map<string, Credentials>();
  for (const row of plan) {
    if (credentials.has(row.certId)) continue;
    const cert = file(`${row.certId}/cert`);
    const key = file(`${row.certId}/key`);
    const c = x509(cert);
    const where = join(dir, cert.path);
    const subject = parseDn(c.subject);
    const cn = subject.CN ?? [];
    if (cn.length !== 1 || cn[0] !== row.user) {
      throw new InputError(where, `has CN ${JSON.stringify(cn.join(','))} but ${row.name} must authenticate as "${row.user}"; re-run 03-pki`);
    }
    if (row.group && !(subject.O ?? []).includes(row.group)) {
      throw new InputError(where, `has O ${JSON.stringify((subject.O ?? []).join(','))}; ${row.user} needs the group "${row.group}"; re-run 03-pki`);
    }
    if (!c.checkIssued(caX509) || !c.verify(caX509.publicKey)) {
      throw new InputError(where, `is not signed by ${CLUSTER_CA_ID} (${join(dir, ca.path)}); the API server would refuse it; re-run 03-pki`);
    }
    if (!(c.keyUsage ?? []).includes(CLIENT_AUTH)) {
      throw new InputError(where, 'lacks the clientAuth extended key usage; the API server would refuse it; re-run 03-pki');
    }
    let matches = false;
    try {
      matches = c.checkPrivateKey(createPrivateKey(key.text));
    } catch (e) {
      throw new InputError(join(dir, key.path), `is not a readable private key (${(e as Error).message}); re-run 03-pki`);
    }
    if (!matches) throw new InputError(join(dir, key.path), `does not belong to ${cert.path}; re-run 03-pki`);
    noteExpiry(row.certId, c);
    credentials.set(row.certId, { cert, key, x509: c });
  }
  return { ca, apiserver, apiserverPath: apiserverFile.path, credentials, expiring };
}

/**
 * Each server address must be one the kube-apiserver certificate vouches for, or every client
 * using that kubeconfig fails TLS verification. Returns one sentence per uncovered address.
 */
export function serverProblems(plan: readonly KubeconfigPlan[], apiserver: X509Certificate): string[] {
  const uncovered = new Map<string, KubeconfigPlan[]>();
  for (const row of plan) {
    const host = new URL(row.server).hostname;
    const ok = isIP(host) ? apiserver.checkIP(host) !== undefined : apiserver.checkHost(host) !== undefined;
    if (!ok) uncovered.set(host, [...(uncovered.get(host) ?? []), row]);
  }
  return [...uncovered].map(
    ([host, rows]) =>
      `the kube-apiserver certificate does not cover ${host} (${rows[0]!.serverFrom.replace(/ \(.*\)$/, '')}), the server of ${rows.map((r) => r.name).join(', ')}; re-run 03-pki so its SANs include it`,
  );
}

/** "CN=admin\nO=system:masters" -> { CN: ["admin"], O: ["system:masters"] }. */
export function parseDn(dn: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of dn.split('\n')) {
    const at = line.indexOf('=');
    if (at <= 0) continue;
    const k = line.slice(0, at);
    (out[k] ??= []).push(line.slice(at + 1));
  }
  return out;
}
