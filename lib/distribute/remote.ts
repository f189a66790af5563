/**
 * What 05-distribute runs on a host, as pure functions: the shell scripts (rendered from a host's
 * plan) and the parsers of what they print. Three commands per host, whatever the number of files:
 *
 *   1. survey   SHA-256, mode and owner of every target file; mode and owner of the managed
 *               directories; files that look like private keys under them; temp files an
 *               interrupted run left behind. Reads only.
 *   2. install  only when something differs: the changed files arrive base64-framed on stdin
 *               (never in the command line, never in a log), each is written to a 0600 temp file
 *               next to its target, all are checked by SHA-256, then each is given owner root and
 *               its mode and renamed into place. A damaged upload changes nothing.
 *   3. verify   the installed files' SHA-256, mode and owner again; `openssl verify` of every
 *               installed certificate against the installed CA; every private key against its
 *               certificate (or sa.key against sa.pub).
 *
 * The scripts carry no secret: they can be printed (--verbose) and pasted.
 */
import { posix } from 'node:path';
import { shellQuote } from '../exec.ts';
import { MANAGED_DIRS, type HostPlan, type PlannedFile, type PlannedDir } from './plan.ts';

/** Temp files of an install are `.<name>.hardway-<tag>` (and `....b64`) next to their target, as putFile names them. */
export const TEMP_PATTERN = '.*.hardway-*';
const END = 'E end';

const q = shellQuote;

// ---------------------------------------------------------------------------------------------
// survey

/** The lines that print the state of `paths`: `F missing|link|other PATH`, `H SHA  PATH`, `S MODE UID GID PATH`. */
function fileStateLines(paths: readonly string[]): string[] {
  if (paths.length === 0) return [];
  return [
    'set --',
    `for p in ${paths.map(q).join(' ')}; do`,
    '  if [ -L "$p" ]; then echo "F link $p"',
    '  elif [ -f "$p" ]; then set -- "$@" "$p"',
    '  elif [ -e "$p" ]; then echo "F other $p"',
    '  else echo "F missing $p"; fi',
    'done',
    'if [ $# -gt 0 ]; then',
    "  sha256sum -- \"$@\" | sed 's/^/H /'",
    "  stat -c 'S %a %u %g %n' -- \"$@\"",
    'fi',
  ];
}

/** Reads only. Prints one line per fact; the last line is `E end` (so a cut-off answer is noticed). */
export function surveyScript(plan: HostPlan): string {
  return [
    `# 05-distribute survey of ${plan.host.name}: what is installed, and any private key under ${MANAGED_DIRS.join(', ')}`,
    'set -u',
    ...fileStateLines(plan.files.map((f) => f.path)),
    `for d in ${MANAGED_DIRS.map(q).join(' ')}; do`,
    '  if [ -d "$d" ]; then stat -L -c \'D %a %u %g %n\' "$d"',
    '  elif [ -e "$d" ] || [ -L "$d" ]; then echo "D other $d"',
    '  else echo "D missing $d"; fi',
    'done',
    'set --',
    `for d in ${MANAGED_DIRS.map(q).join(' ')}; do if [ -d "$d" ]; then set -- "$@" "$d"; fi; done`,
    'if [ $# -gt 0 ]; then',
    `  find "$@" -xdev -type f -name '${TEMP_PATTERN}' | sed 's/^/T /'`,
    `  find "$@" -xdev -type f ! -name '${TEMP_PATTERN}' \\( -name '*-key.pem' -o -name '*.key' -o -name '*_key' \\) | sed 's/^/K /'`,
    `  find "$@" -xdev -type f ! -name '${TEMP_PATTERN}' -size -65k -exec grep -l -e 'PRIVATE KEY' -- {} + | sed 's/^/K /'`,
    'fi',
    `echo '${END}'`,
  ].join('\n');
}

export interface RemoteFile {
  state: 'missing' | 'link' | 'other' | 'file';
  sha256?: string;
  /** Octal without leading zeros, as `stat %a` prints it: "600". */
  mode?: string;
  owner?: string;
}

export interface RemoteDir {
  state: 'missing' | 'other' | 'dir';
  mode?: string;
  owner?: string;
}

export interface Survey {
  files: Map<string, RemoteFile>;
  dirs: Map<string, RemoteDir>;
  /** Temp files left by an interrupted install. */
  leftovers: string[];
  /** Files under the managed directories that are, or are named like, private keys. */
  keyFiles: string[];
}

/** Parses the file-state lines (F/H/S) of a survey or verify answer. */
function parseFileStates(lines: readonly string[]): Map<string, RemoteFile> {
  const files = new Map<string, RemoteFile>();
  const get = (p: string) => files.get(p) ?? (files.set(p, { state: 'file' }), files.get(p)!);
  for (const line of lines) {
    let m: RegExpExecArray | null;
    if ((m = /^F (missing|link|other) (\/.*)$/.exec(line))) files.set(m[2]!, { state: m[1] as RemoteFile['state'] });
    else if ((m = /^H ([0-9a-f]{64}) {2}(\/.*)$/.exec(line))) get(m[2]!).sha256 = m[1]!;
    else if ((m = /^S ([0-7]+) (\d+) (\d+) (\/.*)$/.exec(line))) Object.assign(get(m[4]!), { mode: m[1]!, owner: `${m[2]}:${m[3]}` });
  }
  return files;
}

function lines(text: string, what: string): string[] {
  const all = text.split('\n').filter((l) => l !== '');
  if (all.at(-1) !== END) throw new Error(`the ${what} answer was cut off (no "${END}" line): ${text.slice(-200)}`);
  return all.slice(0, -1);
}

export function parseSurvey(text: string): Survey {
  const all = lines(text, 'survey');
  const dirs = new Map<string, RemoteDir>();
  const leftovers: string[] = [];
  const keyFiles = new Set<string>();
  for (const line of all) {
    let m: RegExpExecArray | null;
    if ((m = /^D (missing|other) (\/.*)$/.exec(line))) dirs.set(m[2]!, { state: m[1] as RemoteDir['state'] });
    else if ((m = /^D ([0-7]+) (\d+) (\d+) (\/.*)$/.exec(line))) dirs.set(m[4]!, { state: 'dir', mode: m[1]!, owner: `${m[2]}:${m[3]}` });
    else if ((m = /^T (\/.*)$/.exec(line))) leftovers.push(m[1]!);
    else if ((m = /^K (\/.*)$/.exec(line))) keyFiles.add(m[1]!);
  }
  return { files: parseFileStates(all), dirs, leftovers: leftovers.sort(), keyFiles: [...keyFiles].sort() };
}

// ---------------------------------------------------------------------------------------------
// decide

export type FileAction =
  | { file: PlannedFile; action: 'already' }
  | { file: PlannedFile; action: 'upload' | 'fix'; reason: string }
  | { file: PlannedFile; action: 'blocked'; reason: string };

export type DirAction =
  | { dir: PlannedDir; action: 'already' }
  | { dir: PlannedDir; action: 'create' | 'fix'; reason: string }
  | { dir: PlannedDir; action: 'blocked'; reason: string };

export interface Decision {
  files: FileAction[];
  dirs: DirAction[];
  leftovers: string[];
  /** Private keys under the managed directories that the map does not put on this host. */
  strayKeys: string[];
}

const octal = (mode: string) => parseInt(mode, 8);

/** What to do on one host, from its plan and its survey. Pure. */
export function decide(plan: HostPlan, survey: Survey): Decision {
  const dirs: DirAction[] = plan.dirs.map((dir): DirAction => {
    const seen = survey.dirs.get(dir.path);
    if (!seen || seen.state === 'missing') return { dir, action: 'create', reason: `created, mode ${dir.mode}` };
    if (seen.state === 'other') return { dir, action: 'blocked', reason: 'exists and is not a directory; move it away and run again' };
    const why: string[] = [];
    if (octal(seen.mode!) !== octal(dir.mode)) why.push(`mode ${seen.mode} -> ${dir.mode.replace(/^0/, '')}`);
    if (seen.owner !== '0:0') why.push(`owner ${seen.owner} -> 0:0`);
    return why.length ? { dir, action: 'fix', reason: why.join(', ') } : { dir, action: 'already' };
  });
  const blockedDirs = new Set(dirs.filter((d) => d.action === 'blocked').map((d) => d.dir.path));

  const files: FileAction[] = plan.files.map((file): FileAction => {
    if (blockedDirs.has(posix.dirname(file.path))) return { file, action: 'blocked', reason: `${posix.dirname(file.path)} is not a directory` };
    const seen = survey.files.get(file.path);
    if (!seen || seen.state === 'missing') return { file, action: 'upload', reason: 'new file' };
    if (seen.state === 'link') return { file, action: 'upload', reason: 'was a symbolic link' };
    if (seen.state === 'other') return { file, action: 'blocked', reason: 'exists and is not a regular file; move it away and run again' };
    if (!seen.sha256) return { file, action: 'upload', reason: 'could not be read' };
    if (seen.sha256 !== file.sha256) return { file, action: 'upload', reason: 'content differs' };
    const why: string[] = [];
    if (seen.mode === undefined || octal(seen.mode) !== octal(file.mode)) why.push(`mode ${seen.mode ?? '?'} -> ${file.mode.replace(/^0/, '')}`);
    if (seen.owner !== '0:0') why.push(`owner ${seen.owner ?? '?'} -> 0:0`);
    return why.length ? { file, action: 'fix', reason: why.join(', ') } : { file, action: 'already' };
  });

  const mine = new Set(plan.files.map((f) => f.path));
  return { files, dirs, leftovers: survey.leftovers, strayKeys: survey.keyFiles.filter((k) => !mine.has(k)) };
}

/** Whether the install command has anything to do. */
export function hasWork(d: Decision): boolean {
  return d.leftovers.length > 0 || d.dirs.some((x) => x.action === 'create' || x.action === 'fix') || d.files.some((x) => x.action === 'upload' || x.action === 'fix');
}

// ---------------------------------------------------------------------------------------------
// install

/** The temp file a file is decoded into, next to its target (same filesystem: the rename is atomic). */
export function tempPath(path: string, tag: string): string {
  return posix.join(posix.dirname(path), `.${posix.basename(path)}.hardway-${tag}`);
}

/** The bytes for stdin: each uploaded file base64-encoded under a `@@ <encoded temp path>` line. */
export function bundle(d: Decision, content: (f: PlannedFile) => Buffer, tag: string): Buffer {
  const parts: string[] = [];
  for (const a of d.files) {
    if (a.action !== 'upload') continue;
    parts.push(`@@ ${tempPath(a.file.path, tag)}.b64\n`, content(a.file).toString('base64').replace(/.{1,76}/g, '$&\n'));
  }
  return Buffer.from(parts.join(''));
}

/** `chmod 0600 a b`, `chmod 0644 c`: one command per mode. */
function chmodLines(items: readonly (readonly [string, string])[]): string[] {
  const modes = [...new Set(items.map(([m]) => m))].sort();
  return modes.map((m) => `chmod ${m} -- ${items.filter(([x]) => x === m).map(([, p]) => q(p)).join(' ')}`);
}

/**
 * The install command: directories, removal of an interrupted run's temp files, then the
 * uploaded files (decoded next to their targets, all SHA-256-checked before any is renamed into
 * place), then mode and owner fixes. `set -e` and a trap: on any failure the temp files go and
 * the targets keep their old content. One command per line, so `set -e` stops at the first failure.
 */
export function installScript(plan: HostPlan, d: Decision, tag: string): string {
  const uploads = d.files.filter((a) => a.action === 'upload').map((a) => a.file);
  const fixes = d.files.filter((a) => a.action === 'fix').map((a) => a.file);
  const temps = uploads.flatMap((f) => [tempPath(f.path, tag), `${tempPath(f.path, tag)}.b64`]);
  const out: string[] = [
    `# 05-distribute install on ${plan.host.name}: ${uploads.length} upload(s), ${fixes.length} mode/owner fix(es)`,
    'set -eu',
    'umask 077',
  ];
  if (temps.length) {
    out.push(`cleanup() { rm -f -- ${temps.map(q).join(' ')}; }`, 'trap cleanup EXIT', "trap 'exit 129' HUP", "trap 'exit 130' INT", "trap 'exit 143' TERM");
  }
  for (const a of d.dirs) {
    if (a.action !== 'create' && a.action !== 'fix') continue;
    const p = q(a.dir.path);
    out.push(`mkdir -p ${p}`, `chown 0:0 ${p}`, `chmod ${a.dir.mode} ${p}`);
  }
  if (d.leftovers.length) out.push(`rm -f -- ${d.leftovers.map(q).join(' ')}`);
  if (uploads.length) {
    const t = uploads.map((f) => tempPath(f.path, tag));
    out.push(
      '# the files, base64 under "@@ <path>" lines on stdin, into 0600 files next to their targets',
      "awk '/^@@ \\// { if (f) close(f); f = $2; printf \"\" > f; next } { print > f }'",
      ...t.map((x) => `base64 -d < ${q(`${x}.b64`)} > ${q(x)}`),
      `rm -f -- ${t.map((x) => q(`${x}.b64`)).join(' ')}`,
      'if ! sha256sum -c --quiet --strict >&2 <<EOF',
      ...uploads.map((f, i) => `${f.sha256}  ${t[i]}`),
      'EOF',
      'then echo "upload damaged in transit: SHA-256 differs (nothing was replaced)" >&2; exit 90; fi',
      `chown 0:0 -- ${t.map(q).join(' ')}`,
      ...chmodLines(uploads.map((f, i) => [f.mode, t[i]!])),
      ...uploads.map((f, i) => `mv -f -- ${q(t[i]!)} ${q(f.path)}`),
    );
  }
  if (fixes.length) out.push(`chown 0:0 -- ${fixes.map((f) => q(f.path)).join(' ')}`, ...chmodLines(fixes.map((f) => [f.mode, f.path])));
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// verify

/** Reads only: the installed files' state again, `openssl verify` per certificate, key/certificate pairs. */
export function verifyScript(plan: HostPlan): string {
  const certs = plan.files.filter((f) => f.verifyWith);
  return [
    `# 05-distribute verify on ${plan.host.name}: ${certs.length} certificate(s) against their installed CA, ${plan.pairs.length} key pair(s)`,
    'set -u',
    ...fileStateLines(plan.files.map((f) => f.path)),
    'v() { if out=$(openssl verify -CAfile "$1" "$2" 2>&1); then echo "V ok $2"; else echo "V fail $2 $(printf \'%s\' "$out" | tr \'\\n\' \' \')"; fi; }',
    '# all certificates of one CA in one openssl call; only if that fails, one call each to say which and why',
    'vs() { ca=$1; shift; if openssl verify -CAfile "$ca" "$@" > /dev/null 2>&1; then for c in "$@"; do echo "V ok $c"; done; else for c in "$@"; do v "$ca" "$c"; done; fi; }',
    'p() {',
    '  a=$(openssl pkey -in "$1" -pubout 2>&1) || { echo "P fail $1 $2 cannot read the private key"; return; }',
    '  if [ "$3" = x509 ]; then b=$(openssl x509 -in "$2" -noout -pubkey 2>&1); else b=$(openssl pkey -pubin -in "$2" -pubout 2>&1); fi',
    '  if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "P ok $1 $2"; else echo "P fail $1 $2 the private key does not belong to it"; fi',
    '}',
    ...[...new Set(certs.map((f) => f.verifyWith!))].map((ca) => `vs ${q(ca)} ${certs.filter((f) => f.verifyWith === ca).map((f) => q(f.path)).join(' ')}`),
    ...plan.pairs.map((p) => `p ${q(p.key)} ${q(p.cert)} ${p.certKind === 'x509' ? 'x509' : 'pub'}`),
    `echo '${END}'`,
  ].join('\n');
}

export interface Verification {
  /** One sentence per problem, naming the file. */
  problems: string[];
  certificates: number;
  pairs: number;
}

/** Compares the verify answer with the plan: every file as planned, every certificate and pair OK. */
export function parseVerify(text: string, plan: HostPlan): Verification {
  const all = lines(text, 'verify');
  const problems: string[] = [];
  const states = parseFileStates(all);
  for (const f of plan.files) {
    const s = states.get(f.path);
    if (!s || s.state !== 'file') problems.push(`${f.path}: ${s?.state === 'missing' || !s ? 'missing' : `not a regular file (${s.state})`} after installing`);
    else if (s.sha256 !== f.sha256) problems.push(`${f.path}: SHA-256 ${s.sha256 ?? '(unreadable)'} after installing, expected ${f.sha256}`);
    else if (s.mode === undefined || octal(s.mode) !== octal(f.mode) || s.owner !== '0:0') problems.push(`${f.path}: mode ${s.mode} owner ${s.owner} after installing, expected ${f.mode} owner 0:0`);
  }
  let certificates = 0;
  let pairs = 0;
  const certOk = new Set<string>();
  const pairOk = new Set<string>();
  for (const line of all) {
    let m: RegExpExecArray | null;
    if ((m = /^V ok (\/\S+)$/.exec(line))) certOk.add(m[1]!);
    else if ((m = /^V fail (\/\S+) ?(.*)$/.exec(line))) {
      const f = plan.files.find((x) => x.path === m![1]);
      problems.push(`${m[1]}: openssl verify against ${f?.verifyWith ?? 'its CA'} failed: ${m[2]!.trim()}`);
    } else if ((m = /^P ok (\/\S+) (\/\S+)$/.exec(line))) pairOk.add(`${m[1]} ${m[2]}`);
    else if ((m = /^P fail (\/\S+) (\/\S+) ?(.*)$/.exec(line))) problems.push(`${m[1]} and ${m[2]}: ${m[3]!.trim()}`);
  }
  for (const f of plan.files.filter((x) => x.verifyWith)) {
    if (certOk.has(f.path)) certificates++;
    else if (!problems.some((p) => p.startsWith(`${f.path}: openssl`))) problems.push(`${f.path}: no verification answer`);
  }
  for (const p of plan.pairs) {
    if (pairOk.has(`${p.key} ${p.cert}`)) pairs++;
    else if (!problems.some((x) => x.startsWith(`${p.key} and ${p.cert}`))) problems.push(`${p.key} and ${p.cert}: no answer`);
  }
  return { problems, certificates, pairs };
}
