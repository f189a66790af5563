/**
 * Shared helpers for the 03-pki tests: temp inventories and workspaces, running the real
 * `scripts/03-pki.mjs`, calling the real openssl, and checking a whole workspace PKI.
 * Nothing here fakes a tool: every check reads what openssl (or the files) say.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync, statSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseInventory } from '../../lib/inventory.ts';
import { planPki } from '../../lib/pki/plan.ts';
import type { Manifest, ManifestEntry } from '../../lib/manifest.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SCRIPT = join(ROOT, 'scripts', '03-pki.mjs');
export const CA_IDS = ['kubernetes-ca', 'etcd-ca', 'front-proxy-ca'] as const;

// ---------------------------------------------------------------- inventories and workspaces

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The repository's inventory.json, parsed fresh (callers may mutate it). */
export function baseInventory(): Json {
  return JSON.parse(readFileSync(join(ROOT, 'inventory.json'), 'utf8')) as Json;
}

export interface InventoryOptions {
  tool?: 'cfssl' | 'openssl';
  keyAlgorithm?: 'rsa-2048' | 'ecdsa-p256';
  /** Number of workers; above 2 the lab network becomes 10.240.0.0/16 and workers live in 10.240.1.0/24+. */
  workers?: number;
  edit?: (inv: Json) => void;
}

/** The default inventory with the options applied. */
export function makeInventory(opts: InventoryOptions = {}): Json {
  const inv = baseInventory();
  if (opts.tool) inv.pki.tool = opts.tool;
  if (opts.keyAlgorithm) inv.pki.keyAlgorithm = opts.keyAlgorithm;
  if (opts.workers !== undefined && opts.workers !== inv.workers.length) {
    inv.lab.cidr = '10.240.0.0/16';
    inv.aws.vpcCidr = '10.240.0.0/16';
    inv.workers = workerList(opts.workers);
  }
  opts.edit?.(inv);
  return inv;
}

/** `n` workers at 10.240.1.1, 10.240.1.2, ... (spilling into 10.240.2.0/24 past 250), pod /24s from the default podCidr. */
export function workerList(n: number): Json[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `worker-${i}`,
    privateIp: `10.240.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`,
    podCidr: `10.200.${i}.0/24`,
  }));
}

export interface Workspace {
  /** A temp directory holding inventory.json and the workspace `ws/`. */
  root: string;
  inventoryPath: string;
  dir: string;
  writeInventory(inv: Json): void;
  inventory(): Json;
  remove(): void;
}

/** A fresh temp directory with `inv` written as its inventory and an empty workspace path. */
export function workspace(inv: Json, label = 'pki'): Workspace {
  const root = mkdtempSync(join(tmpdir(), `hardway-${label}-`));
  const inventoryPath = join(root, 'inventory.json');
  const ws: Workspace = {
    root,
    inventoryPath,
    dir: join(root, 'ws'),
    writeInventory: (i) => writeFileSync(inventoryPath, `${JSON.stringify(i, null, 2)}\n`),
    inventory: () => JSON.parse(readFileSync(inventoryPath, 'utf8')) as Json,
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
  ws.writeInventory(inv);
  return ws;
}

// ---------------------------------------------------------------- running things

export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a real command (no shell) to completion. Never rejects on a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** `node scripts/03-pki.mjs --inventory <ws> --dir <ws> ...extra`, the real CLI. */
export function runPkiCli(ws: Workspace, extra: string[] = []): Promise<Ran> {
  return run(process.execPath, [SCRIPT, '--inventory', ws.inventoryPath, '--dir', ws.dir, ...extra], { cwd: ws.root, timeoutMs: 170_000 });
}

/** Like runPkiCli with --json; fails loudly unless it exits 0, and returns the parsed result. */
export async function runPkiJson(ws: Workspace, extra: string[] = []): Promise<{ result: Json; ran: Ran }> {
  const ran = await runPkiCli(ws, ['--json', ...extra]);
  if (ran.code !== 0) throw new Error(`03-pki exited ${ran.code ?? ran.signal}:\n${ran.stderr}`);
  return { result: JSON.parse(ran.stdout) as Json, ran };
}

/** Starts 03-pki in its own process group, so the test can SIGKILL it and its cfssl/openssl children at once. */
export function startPkiCli(ws: Workspace, extra: string[] = []): ChildProcess {
  return spawn(process.execPath, [SCRIPT, '--inventory', ws.inventoryPath, '--dir', ws.dir, ...extra], {
    cwd: ws.root, stdio: 'ignore', detached: true,
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Kills a process we started (its group when it was detached); ignores "already gone". */
export function killTree(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* gone */
    }
  }
}

export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `fn` over `items`, `limit` at a time. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

// ---------------------------------------------------------------- openssl

/** `openssl verify -CAfile ca cert` (cert by path). True only on exit 0 and "<path>: OK". */
export async function opensslVerify(caFile: string, certFile: string): Promise<{ ok: boolean; output: string }> {
  const r = await run('openssl', ['verify', '-CAfile', caFile, certFile]);
  const output = `${r.stdout}${r.stderr}`;
  return { ok: r.code === 0 && r.stdout.includes(`${certFile}: OK`), output };
}

/** `openssl x509 -noout -text`, for reading extensions as openssl prints them. */
export async function x509Text(certFile: string): Promise<string> {
  const r = await run('openssl', ['x509', '-in', certFile, '-noout', '-text']);
  if (r.code !== 0) throw new Error(`openssl x509 ${certFile}: ${r.stderr}`);
  return r.stdout;
}

/** The public key openssl extracts from a certificate and from a private key; equal when they belong together. */
export async function certAndKeyPublic(certFile: string, keyFile: string): Promise<{ fromCert: string; fromKey: string }> {
  const [c, k] = await Promise.all([
    run('openssl', ['x509', '-in', certFile, '-noout', '-pubkey']),
    run('openssl', ['pkey', '-in', keyFile, '-pubout']),
  ]);
  if (c.code !== 0) throw new Error(`openssl x509 -pubkey ${certFile}: ${c.stderr}`);
  if (k.code !== 0) throw new Error(`openssl pkey ${keyFile}: ${k.stderr}`);
  return { fromCert: c.stdout.trim(), fromKey: k.stdout.trim() };
}

/** `openssl x509 -fingerprint -sha256`, as "AB:CD:..." */
export async function fingerprint(certFile: string): Promise<string> {
  const r = await run('openssl', ['x509', '-in', certFile, '-noout', '-fingerprint', '-sha256']);
  const m = /Fingerprint=([0-9A-F:]+)/.exec(r.stdout);
  if (!m) throw new Error(`no fingerprint for ${certFile}: ${r.stderr}`);
  return m[1]!;
}

/** The X509v3 extension block with `title` from `openssl x509 -text`, trimmed; undefined when absent. */
export function extension(text: string, title: string): string | undefined {
  const m = new RegExp(`X509v3 ${title}:( critical)? *\\n\\s+(.*)`).exec(text);
  return m ? `${m[1] ? 'critical ' : ''}${m[2]!.trim()}` : undefined;
}

// ---------------------------------------------------------------- workspace facts

export function readManifest(dir: string): Manifest {
  return JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
}

export function pkiEntries(dir: string): ManifestEntry[] {
  return readManifest(dir).entries.filter((e) => e.step === '03-pki');
}

/** Certificate id -> SHA-256 fingerprint, from the manifest. */
export function manifestFingerprints(dir: string): Map<string, string> {
  return new Map(pkiEntries(dir).filter((e) => e.certificate).map((e) => [e.id.replace(/\/cert$/, ''), e.certificate!.fingerprint]));
}

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

export interface FileState {
  sha256: string;
  mtimeMs: number;
  mode: number;
  size: number;
}

/** Every file and directory below `dir`: content hash, mtime and mode. */
export function snapshot(dir: string): Map<string, FileState | 'dir'> {
  const out = new Map<string, FileState | 'dir'>();
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      const rel = relative(dir, p);
      if (st.isDirectory()) {
        out.set(`${rel}/`, 'dir');
        walk(p);
      } else {
        out.set(rel, { sha256: sha256(readFileSync(p)), mtimeMs: st.mtimeMs, mode: st.mode & 0o777, size: st.size });
      }
    }
  };
  walk(dir);
  return out;
}

/** Lines describing how two snapshots differ; empty when identical. */
export function diffSnapshots(a: Map<string, FileState | 'dir'>, b: Map<string, FileState | 'dir'>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w === undefined) out.push(`removed ${k}`);
    else if (JSON.stringify(v) !== JSON.stringify(w)) out.push(`changed ${k}: ${JSON.stringify(v)} -> ${JSON.stringify(w)}`);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`added ${k}`);
  return out;
}

const mode = (p: string) => statSync(p).mode & 0o777;

/**
 * Checks a finished workspace from scratch with the real openssl, trusting nothing 03-pki says
 * about itself. Returns every problem found (empty: the PKI is whole and valid):
 *  - the manifest lists exactly the plan's rows (cert + key each) and the service-account pair;
 *  - each listed file exists, its SHA-256 matches, keys are 0600 and certificates 0644;
 *  - each certificate verifies against its CA (a CA against itself), openssl's fingerprint equals
 *    the manifest's, and the key belongs to the certificate;
 *  - sa.pub is the public half of sa.key; no temp file or openssl scratch database is left.
 */
export async function checkWorkspace(dir: string, inventory: Json): Promise<string[]> {
  const problems: string[] = [];
  const plan = planPki(parseInventory(inventory));
  const rows = [...plan.cas, ...plan.leaves];
  if (!existsSync(join(dir, 'manifest.json'))) return ['manifest.json is missing'];
  const entries = pkiEntries(dir);
  const byId = new Map(entries.map((e) => [e.id, e]));
  const wantIds = [...rows.flatMap((r) => [`${r.id}/cert`, `${r.id}/key`]), 'service-account/key', 'service-account/pub'].sort();
  const gotIds = [...byId.keys()].sort();
  if (JSON.stringify(wantIds) !== JSON.stringify(gotIds)) {
    problems.push(`manifest ids differ from the plan: missing [${wantIds.filter((i) => !byId.has(i)).join(', ')}], extra [${gotIds.filter((i) => !wantIds.includes(i)).join(', ')}]`);
  }
  for (const e of entries) {
    const p = join(dir, e.path);
    if (!existsSync(p)) {
      problems.push(`${e.id}: ${e.path} is missing`);
      continue;
    }
    if (sha256(readFileSync(p)) !== e.sha256) problems.push(`${e.id}: sha256 of ${e.path} differs from the manifest`);
    const want = e.secret ? 0o600 : 0o644;
    if (mode(p) !== want) problems.push(`${e.id}: ${e.path} has mode ${mode(p).toString(8)}, expected ${want.toString(8)}`);
  }
  const pkiDir = join(dir, 'pki');
  const results = await pool(rows, 4, async (row) => {
    const out: string[] = [];
    const cert = join(pkiDir, row.id, 'cert.pem');
    const key = join(pkiDir, row.id, 'key.pem');
    if (!existsSync(cert) || !existsSync(key)) return [`${row.id}: cert.pem or key.pem missing`];
    const v = await opensslVerify(join(pkiDir, row.signer, 'cert.pem'), cert);
    if (!v.ok) out.push(`${row.id}: openssl verify against ${row.signer} failed: ${v.output.trim()}`);
    const pub = await certAndKeyPublic(cert, key);
    if (pub.fromCert !== pub.fromKey) out.push(`${row.id}: key.pem does not belong to cert.pem`);
    const fp = await fingerprint(cert);
    const listed = byId.get(`${row.id}/cert`)?.certificate?.fingerprint;
    if (listed !== fp) out.push(`${row.id}: manifest fingerprint ${listed} differs from openssl's ${fp}`);
    return out;
  });
  problems.push(...results.flat());
  const sa = join(pkiDir, 'service-account');
  if (existsSync(join(sa, 'sa.key')) && existsSync(join(sa, 'sa.pub'))) {
    const r = await run('openssl', ['pkey', '-in', join(sa, 'sa.key'), '-pubout']);
    if (r.code !== 0 || r.stdout.trim() !== readFileSync(join(sa, 'sa.pub'), 'utf8').trim()) problems.push('service-account: sa.pub is not the public half of sa.key');
  } else problems.push('service-account: sa.key or sa.pub missing');
  for (const d of readdirSync(pkiDir)) {
    for (const f of readdirSync(join(pkiDir, d))) {
      if (f.endsWith('.tmp') || f === '.ca-db') problems.push(`leftover ${d}/${f}`);
    }
  }
  return problems;
}
