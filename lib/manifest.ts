/**
 * The workspace manifest (`<dir>/manifest.json`): every file the steps generated that matters to
 * the cluster, what it is, its checksum, and which hosts receive it at which remote path.
 * 03-pki and 04-kubeconfig each own their entries (by `step`); 05-distribute only reads it.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeIfChanged } from './fsutil.ts';

export type EntryKind = 'ca-cert' | 'ca-key' | 'cert' | 'key' | 'sa-key' | 'sa-pub' | 'kubeconfig' | 'encryption-config';

export interface Destination {
  /** Inventory host name. */
  host: string;
  /** Absolute path on the host. */
  path: string;
  /** Octal string: "0600" for anything secret, "0644" otherwise. Owner is always root. */
  mode: '0600' | '0644';
}

export interface CertificateFacts {
  cn: string;
  o: string[];
  sans: string[];
  /** Extended key usages as named by openssl: "serverAuth", "clientAuth". */
  usages: string[];
  /** CN of the signing CA; the CA's own CN for a CA. */
  signer: string;
  /** SHA-256 fingerprint, colon-separated upper-case hex as openssl prints it. */
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  serial: string;
  isCa: boolean;
  keyAlgorithm: string;
}

export interface ManifestEntry {
  /** Unique, stable: e.g. "kube-apiserver/cert", "kubernetes-ca/key", "kubeconfig/admin". */
  id: string;
  /** The step that owns (writes) this entry. */
  step: string;
  kind: EntryKind;
  /** Path relative to the workspace. */
  path: string;
  sha256: string;
  secret: boolean;
  /** For certificates (kind ca-cert or cert). */
  certificate?: CertificateFacts;
  /** Where 05-distribute installs it; empty for files that never leave the workstation. */
  destinations: Destination[];
  /** A sentence on what the file is for, who reads it. */
  purpose: string;
}

export interface Manifest {
  version: 1;
  cluster: string;
  entries: ManifestEntry[];
}

export const MANIFEST_FILE = 'manifest.json';

export function readManifest(dir: string): Manifest | undefined {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8')) as Manifest;
}

/** Replaces the entries owned by `step` with `entries`, keeping the other steps' entries. */
export function updateManifest(dir: string, cluster: string, step: string, entries: ManifestEntry[]): Manifest {
  const old = readManifest(dir);
  const kept = (old?.entries ?? []).filter((e) => e.step !== step);
  const manifest: Manifest = { version: 1, cluster, entries: [...kept, ...entries].sort((a, b) => a.id.localeCompare(b.id)) };
  writeIfChanged(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
  return manifest;
}
