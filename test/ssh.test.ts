// The SSH layer: known_hosts semantics (pure), then against a real lab: commands, files,
// strict host keys (unknown refused, --accept-new-host-keys, changed always refused), the
// parallel bound, one connection per host, and one host failing without stopping the others.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync, existsSync, renameSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import type { NodeSSH } from 'node-ssh';
import { exec } from '../lib/exec.ts';
import { memoryLogger } from '../lib/log.ts';
import { sha256 } from '../lib/fsutil.ts';
import type { Host } from '../lib/inventory.ts';
import { createTestLab, type TestLab } from './helpers/lab.ts';
import { procAlive } from '../lib/lab/system.ts';
import { openSessions, forEachHost, RemoteCommandError, Session, type SessionPool } from '../lib/ssh/index.ts';
import {
  parseKnownHosts,
  verifyHostKey,
  hostsFieldMatches,
  hostKeyName,
  fingerprint,
  hostKeyAlgorithmsFor,
  parsePublicKeyLine,
  formatKnownHostsLine,
} from '../lib/ssh/known-hosts.ts';

const KEY_A = 'AAAAC3NzaC1lZDI1NTE5AAAAIO8/pq5h6R20/BKv+8hHD8aB4uaEW8SMVrzw92gbg59L';
const KEY_B = 'AAAAC3NzaC1lZDI1NTE5AAAAINoyT1sDz6PRUDldCCGYbdiXu65rRg5psBeA1WvL0WvJ';
const blob = (b64: string) => Buffer.from(b64, 'base64');

let lab: TestLab;
let hosts: Host[];
const khPath = () => join(lab.dir, 'ssh/known_hosts');
const ctxFor = (log = memoryLogger()) => ({ dir: lab.dir, log, dryRun: false });

test.before(async () => {
  lab = await createTestLab('ssh');
  const r = await lab.script('01-infra');
  if (r.code !== 0) throw new Error(`lab did not come up: ${r.stderr}`);
  hosts = lab.hosts.map((h) => ({ name: h.name, role: h.role, privateIp: h.privateIp }));
});

test.after(async () => {
  await lab?.cleanup();
});

// ------------------------------------------------------------------------------------------
// known_hosts, pure

test('known_hosts: plain, comma lists, [host]:port, wildcards and negation', () => {
  assert.ok(hostsFieldMatches('10.0.0.1,controller-0', '10.0.0.1'));
  assert.ok(hostsFieldMatches('10.0.0.1,controller-0', 'controller-0'));
  assert.not.ok(hostsFieldMatches('10.0.0.1', '10.0.0.10'));
  assert.is(hostKeyName('10.0.0.1', 22), '10.0.0.1');
  assert.is(hostKeyName('10.0.0.1', 2222), '[10.0.0.1]:2222');
  assert.ok(hostsFieldMatches('[10.0.0.1]:2222', '[10.0.0.1]:2222'));
  assert.not.ok(hostsFieldMatches('[10.0.0.1]:2222', '10.0.0.1'));
  assert.ok(hostsFieldMatches('10.0.0.*', '10.0.0.77'));
  assert.not.ok(hostsFieldMatches('10.0.0.*,!10.0.0.13', '10.0.0.13'));
  assert.ok(hostsFieldMatches('10.0.0.?', '10.0.0.7'));
});

test('known_hosts: hashed entries made by ssh-keygen -H match their host only', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hardway-kh-'));
  try {
    const f = join(dir, 'kh');
    writeFileSync(f, `10.0.0.1 ssh-ed25519 ${KEY_A}\n`);
    await exec('ssh-keygen', ['-H', '-f', f]);
    const [e] = parseKnownHosts(readFileSync(f, 'utf8'));
    assert.match(e!.hosts, /^\|1\|/);
    assert.ok(hostsFieldMatches(e!.hosts, '10.0.0.1'));
    assert.not.ok(hostsFieldMatches(e!.hosts, '10.0.0.2'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('known_hosts: verdicts known / unknown / changed / revoked; corrupt lines are skipped', () => {
  const text = [
    '# comment',
    `10.0.0.1,c0 ssh-ed25519 ${KEY_A} a comment`,
    `10.0.0.2 ssh-ed25519 ${KEY_A.slice(0, 20)}`, // truncated: skipped
    `10.0.0.3 ssh-rsa ${KEY_A}`, // the blob says ed25519: skipped
    `@revoked * ssh-ed25519 ${KEY_B}`,
    '',
  ].join('\n');
  const e = parseKnownHosts(text);
  assert.is(e.length, 2);
  assert.is(verifyHostKey(e, '10.0.0.1', blob(KEY_A)).status, 'known');
  assert.is(verifyHostKey(e, '10.0.0.9', blob(KEY_A)).status, 'unknown');
  assert.is(verifyHostKey(e, '10.0.0.2', blob(KEY_A)).status, 'unknown');
  assert.is(verifyHostKey(e, '10.0.0.1', blob(KEY_B)).status, 'revoked');
  const other = parseKnownHosts(`10.0.0.1 ssh-ed25519 ${KEY_B}\n`);
  const v = verifyHostKey(other, '10.0.0.1', blob(KEY_A));
  assert.is(v.status, 'changed');
  assert.equal(hostKeyAlgorithmsFor(['ssh-rsa']), ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
  assert.equal(hostKeyAlgorithmsFor(['ssh-ed25519', 'ecdsa-sha2-nistp256']), ['ssh-ed25519', 'ecdsa-sha2-nistp256']);
  assert.is(formatKnownHostsLine(['10.0.0.1', 'c0'], blob(KEY_A), 'x'), `10.0.0.1,c0 ssh-ed25519 ${KEY_A} x`);
});

test("fingerprints match ssh-keygen's", async () => {
  const pub = join(lab.dir, 'ssh/id_ed25519.pub');
  const theirs = (await exec('ssh-keygen', ['-l', '-E', 'sha256', '-f', pub])).stdout.split(' ')[1];
  assert.is(fingerprint(parsePublicKeyLine(readFileSync(pub, 'utf8'))), theirs);
});

test('sudo: commands are wrapped in sudo -n only when the login user is not root', async () => {
  const seen: string[] = [];
  const fake = {
    execCommand: async (cmd: string) => {
      seen.push(cmd);
      return { code: cmd.includes('fail') ? null : 0, signal: null, stdout: '', stderr: '' };
    },
    dispose() {},
  } as unknown as NodeSSH;
  const never = new Promise<Error>(() => {});
  const host = hosts[0]!;
  const asUbuntu = new Session(host, { address: 'x', port: 22, user: 'ubuntu' }, fake, memoryLogger(), never);
  const asRoot = new Session(host, { address: 'x', port: 22, user: 'root' }, fake, memoryLogger(), never);
  await asUbuntu.run("echo 'a b'", { sudo: true });
  await asUbuntu.run('id -u');
  await asRoot.run('id -u', { sudo: true });
  assert.equal(seen, [`sudo -n -- sh -c 'echo '\\''a b'\\'''`, 'id -u', 'id -u']);
  // A missing exit status is a failure, never a success.
  await asRoot.run('fail').then(
    () => assert.unreachable('should reject'),
    (e) => assert.instance(e, RemoteCommandError),
  );
});

// ------------------------------------------------------------------------------------------
// against the lab

test('run, check, readFile, sha256 on a real host; a non-zero exit rejects', async () => {
  const pool = await openSessions(ctxFor(), {});
  try {
    const [o] = await pool.forEachHost([hosts[1]!], async (s) => {
      assert.is((await s.run('echo hi; echo err >&2')).stdout, 'hi\n');
      assert.is((await s.run('exit 3', { okCodes: [3] })).code, 3);
      await s.run('echo nope >&2; exit 4').then(
        () => assert.unreachable('exit 4 must reject'),
        (e: RemoteCommandError) => {
          assert.instance(e, RemoteCommandError);
          assert.is(e.code, 4);
          assert.match(e.message, /nope/);
        },
      );
      assert.is(await s.check('true'), true);
      assert.is(await s.check('false'), false);
      await s.check('exit 2').then(() => assert.unreachable('exit 2 is not an answer'), () => {});
      assert.is(await s.readFile('/nonexistent'), undefined);
      assert.is(await s.sha256('/nonexistent'), undefined);
      const hostname = await s.readFile('/etc/hostname');
      assert.is(await s.sha256('/etc/hostname'), sha256(hostname!));
      return 'done';
    });
    assert.ok(o!.ok, o!.error);
    assert.is(o!.value, 'done');
  } finally {
    await pool.close();
  }
});

test('putFile: atomic, checked, idempotent, fixes mode, validates, leaves no temp files', async () => {
  const pool = await openSessions(ctxFor(), {});
  try {
    const [o] = await pool.forEachHost([hosts[1]!], async (s) => {
      const path = '/etc/hardway-test/secret.key';
      const data = Buffer.from('not really a key\n');
      assert.equal(await s.putFile(data, path, 0o600), { status: 'changed', reason: 'new file' });
      assert.equal(await s.putFile(data, path, 0o600), { status: 'already' });
      assert.is((await s.run(`stat -c '%a %U' ${path}`)).stdout.trim(), '600 root');
      assert.is(await s.sha256(path), sha256(data));
      await s.run(`chmod 644 ${path}`);
      assert.equal(await s.putFile(data, path, 0o600), { status: 'changed', reason: 'mode 644 -> 600' });
      assert.equal(await s.putFile(Buffer.from('v2\n'), path, 0o600, { dryRun: true }), { status: 'would-change', reason: 'content differs' });
      assert.is(await s.readFile(path), 'not really a key\n');
      // A failing validation keeps the old file and removes the temp file.
      await s.putFile(Buffer.from('broken\n'), path, 0o600, { validate: 'grep -q good {}' }).then(
        () => assert.unreachable('validation must fail'),
        (e: Error) => assert.match(e.message, /validation failed/),
      );
      assert.is(await s.readFile(path), 'not really a key\n');
      assert.is((await s.run('ls -A /etc/hardway-test')).stdout.trim(), 'secret.key');
      assert.equal(await s.putFile(Buffer.from('good\n'), path, 0o600, { validate: 'grep -q good {}' }), { status: 'changed', reason: 'content differs' });
      // Binary content survives.
      const bin = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256));
      await s.putFile(bin, '/var/tmp/bin', 0o644);
      assert.is(await s.sha256('/var/tmp/bin'), sha256(bin));
    });
    assert.ok(o!.ok, o!.error);
  } finally {
    await pool.close();
  }
});

test('operations on one session run one at a time, even when fired together', async () => {
  const pool = await openSessions(ctxFor(), {});
  try {
    const [o] = await pool.forEachHost([hosts[1]!], async (s) => {
      await s.run('rm -f /tmp/order');
      await Promise.all(
        [1, 2, 3, 4].map((i) =>
          i % 2 ? s.run(`echo start${i} >> /tmp/order; sleep 0.1; echo end${i} >> /tmp/order`) : s.putFile(Buffer.from(`f${i}`), `/tmp/f${i}`, 0o644).then(() => s.run(`echo put${i} >> /tmp/order`)),
        ),
      );
      const lines = (await s.run('cat /tmp/order')).stdout.trim().split('\n');
      for (let i = 0; i < lines.length; i++) {
        if (lines[i]!.startsWith('start')) assert.is(lines[i + 1], lines[i]!.replace('start', 'end'), `no interleaving: ${lines.join(' ')}`);
      }
      assert.is(lines.length, 6);
    });
    assert.ok(o!.ok, o!.error);
  } finally {
    await pool.close();
  }
});

test('hosts run in parallel up to the bound, one connection per host per pool', async () => {
  for (const parallel of [1, 3]) {
    const log = memoryLogger();
    const pool = await openSessions(ctxFor(log), { parallel });
    let active = 0;
    let max = 0;
    try {
      const work = async () => {
        active++;
        max = Math.max(max, active);
        await new Promise((r) => setTimeout(r, 150));
        active--;
      };
      await pool.forEachHost(hosts, work);
      await pool.forEachHost(hosts, async (s) => {
        await s.run('true');
      });
    } finally {
      await pool.close();
    }
    assert.is(max, parallel, `parallel ${parallel}`);
    assert.is(log.lines.filter((l) => l.includes(': connected to')).length, hosts.length, 'one connection each, reused');
  }
});

test('an unknown host key is refused without the flag and nothing is recorded', async () => {
  renameSync(khPath(), `${khPath()}.saved`);
  try {
    const log = memoryLogger();
    const out = await forEachHost(ctxFor(log), hosts, {}, async () => 'ran');
    for (const o of out) {
      assert.not.ok(o.ok);
      assert.match(o.error!, /unknown host key/);
      assert.is(o.value, undefined, 'fn never ran');
    }
    assert.not.ok(existsSync(khPath()), 'known_hosts not created');
    assert.ok(log.lines.some((l) => /^\S+: FAILED: unknown host key/.test(l)), 'summary says why');
  } finally {
    renameSync(`${khPath()}.saved`, khPath());
  }
});

test('--accept-new-host-keys records a new key loudly; later runs verify against it', async () => {
  const saved = readFileSync(khPath(), 'utf8');
  writeFileSync(khPath(), saved.split('\n').filter((l) => !l.includes('worker-0')).join('\n'));
  try {
    const log = memoryLogger();
    const out = await forEachHost(ctxFor(log), hosts, { acceptNewHostKeys: true }, async (s) => (await s.run('hostname')).stdout);
    assert.ok(out.every((o) => o.ok), JSON.stringify(out));
    const warn = log.lines.filter((l) => l.includes('ACCEPTED A NEW HOST KEY'));
    assert.is(warn.length, 1);
    assert.match(warn[0]!, /^warning: worker-0: /);
    const entries = parseKnownHosts(readFileSync(khPath(), 'utf8'));
    const w = lab.host('worker-0');
    assert.ok(entries.some((e) => hostsFieldMatches(e.hosts, w.privateIp)));
    // The recorded key is the host's real key.
    const real = await lab.inHost('worker-0', 'cat /etc/ssh/ssh_host_ed25519_key.pub');
    assert.ok(verifyHostKey(entries, w.privateIp, parsePublicKeyLine(real)).status === 'known');
    const again = await forEachHost(ctxFor(), hosts, {}, async () => 'ok');
    assert.ok(again.every((o) => o.ok));
  } finally {
    writeFileSync(khPath(), saved);
  }
});

test('a changed host key is refused, even with --accept-new-host-keys; other hosts carry on', async () => {
  const before = readFileSync(khPath(), 'utf8');
  await lab.inHost('worker-0', 'rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key');
  const log = memoryLogger();
  const out = await forEachHost(ctxFor(log), hosts, { acceptNewHostKeys: true }, async (s) => (await s.run('true')).code);
  const w = out.find((o) => o.host === 'worker-0')!;
  assert.not.ok(w.ok);
  assert.match(w.error!, /HOST KEY CHANGED/);
  assert.match(w.error!, /ssh-keygen -R/);
  assert.ok(out.filter((o) => o.host !== 'worker-0').every((o) => o.ok && o.value === 0));
  assert.is(readFileSync(khPath(), 'utf8'), before, 'known_hosts untouched');

  // 01-infra does not launder the new key into known_hosts either.
  const r = await lab.script('01-infra');
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /worker-0: its host key on disk .* differs from known_hosts/);
  assert.is(readFileSync(khPath(), 'utf8'), before);

  // A person decides: drop the old key, re-run 01-infra, and the new one is verified again.
  await exec('ssh-keygen', ['-R', lab.host('worker-0').privateIp, '-f', khPath()]);
  const fixed = await lab.script('01-infra');
  assert.is(fixed.code, 0, fixed.stderr);
  const ok = await forEachHost(ctxFor(), hosts, {}, async () => 'ok');
  assert.ok(ok.every((o) => o.ok), JSON.stringify(ok));
});

test('one host down: the others finish, the host fails with a reason, later calls skip it', async () => {
  const pid = lab.initPid('worker-0')!;
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 50 && procAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  const log = memoryLogger();
  let pool: SessionPool | undefined;
  try {
    pool = await openSessions(ctxFor(log), {});
    const first = await pool.forEachHost(hosts, async (s) => (await s.run('hostname')).stdout.trim());
    const second = await pool.forEachHost(hosts, async () => 'second');
    const w1 = first.find((o) => o.host === 'worker-0')!;
    assert.not.ok(w1.ok);
    assert.match(w1.error!, /connection refused/);
    assert.ok(first.filter((o) => o.host !== 'worker-0').every((o) => o.ok));
    const w2 = second.find((o) => o.host === 'worker-0')!;
    assert.match(w2.error!, /^skipped: cannot connect/);
    pool.printSummary('test');
    assert.ok(log.lines.some((l) => l.startsWith('worker-0: FAILED: cannot connect')));
    assert.ok(log.lines.some((l) => /^controller-0: ok: /.test(l)));
  } finally {
    await pool?.close();
  }
  const r = await lab.script('01-infra');
  assert.is(r.code, 0, r.stderr);
});

test('a command without an exit status fails, and a lost connection fails the rest of that host only', async () => {
  const pool = await openSessions(ctxFor(), {});
  try {
    const out = await pool.forEachHost(hosts, async (s) => {
      if (s.name !== 'controller-0') return 'fine';
      await s.run('kill -KILL $$').then(
        () => assert.unreachable('killed shell must not count as success'),
        (e: RemoteCommandError) => {
          assert.instance(e, RemoteCommandError);
          assert.is(e.code, null);
          assert.match(e.message, /no exit status/);
        },
      );
      // Kill this connection's sshd process: the connection drops under us.
      await s.run('kill -KILL $PPID').catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
      assert.is(s.connected, false);
      await s.run('true');
      return 'unreachable';
    });
    const c = out.find((o) => o.host === 'controller-0')!;
    assert.not.ok(c.ok);
    assert.match(c.error!, /connection/);
    assert.ok(out.filter((o) => o.host !== 'controller-0').every((o) => o.ok && o.value === 'fine'));
  } finally {
    await pool.close();
  }
});

test('--parallel is validated', async () => {
  const { sshOptionsFromFlags } = await import('../lib/ssh/index.ts');
  assert.equal(sshOptionsFromFlags({ flags: {} }), { parallel: 10, acceptNewHostKeys: false });
  assert.equal(sshOptionsFromFlags({ flags: { parallel: '4', 'accept-new-host-keys': true } }), { parallel: 4, acceptNewHostKeys: true });
  for (const bad of ['0', '-1', 'x', '1.5', '999']) assert.throws(() => sshOptionsFromFlags({ flags: { parallel: bad } }), /--parallel/);
});

test.run();
