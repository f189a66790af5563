// The kube-apiserver certificate in a real TLS handshake: `openssl s_server` serves it on
// 127.0.0.1, `openssl s_client -verify_return_error` checks it against kubernetes-ca for the
// Service IP (derived from cluster.serviceCidr), kubernetes.default.svc.<domain> and the other
// SANs, and fails for an address or name that is not in the SAN. Loopback only.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { parseInventory } from '../lib/inventory.ts';
import { makeInventory, workspace, runPkiJson, freePort, killTree, exited, run, type Workspace, type Json } from './helpers/pki.ts';

const started: ChildProcess[] = [];
const spaces: Workspace[] = [];
process.on('exit', () => started.forEach((c) => killTree(c)));
test.after(async () => {
  started.forEach((c) => killTree(c));
  await Promise.all(started.map(exited));
  spaces.forEach((ws) => ws.remove());
});

/** `openssl s_server -www` with `<id>`'s certificate; resolves once it prints ACCEPT. */
async function serve(ws: Workspace, id: string, extra: string[] = []): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const pki = join(ws.dir, 'pki');
  const child = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', join(pki, id, 'cert.pem'), '-key', join(pki, id, 'key.pem'), '-www', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  started.push(child);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s_server did not start: ${out}`)), 10_000);
    const on = (b: Buffer) => {
      out += b.toString();
      if (/^ACCEPT$/m.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.on('exit', (code) => reject(new Error(`s_server exited ${code}: ${out}`)));
  });
  return { port, child };
}

/** One `s_client` handshake that fails on any verification error; what it printed and whether it passed. */
async function connect(ws: Workspace, port: number, check: string[], opts: { ca?: string; client?: string } = {}) {
  const pki = join(ws.dir, 'pki');
  const r = await run('openssl', [
    's_client', '-connect', `127.0.0.1:${port}`, '-CAfile', join(pki, opts.ca ?? 'kubernetes-ca', 'cert.pem'), '-verify_return_error', ...check,
    ...(opts.client ? ['-cert', join(pki, opts.client, 'cert.pem'), '-key', join(pki, opts.client, 'key.pem')] : []),
  ], { input: '', timeoutMs: 10_000 });
  const code = /Verify return code: (\d+) \(([^)]*)\)/.exec(r.stdout);
  return { ok: r.code === 0 && code?.[1] === '0', exit: r.code, verify: code ? `${code[1]} (${code[2]})` : 'none', output: `${r.stdout}\n${r.stderr}` };
}

/** The first host address of an IPv4 CIDR, computed here independently of lib/cidr.ts. */
function firstHost(cidr: string): string {
  const [ip, bits] = cidr.split('/');
  const n = ip!.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const mask = 2 ** 32 - 2 ** (32 - Number(bits));
  const first = (n & mask) >>> 0;
  return [24, 16, 8, 0].map((s) => Math.floor((first + 1) / 2 ** s) % 256).join('.');
}

interface Case {
  label: string;
  inv: Json;
  serviceIp: string;
  domain: string;
  /** The Service IP and domain of the other case: must be refused here. */
  foreignIp: string;
  foreignName: string;
}

const cases: Case[] = [
  {
    label: 'default inventory (cfssl/rsa-2048)', inv: makeInventory(), serviceIp: '10.32.0.1', domain: 'cluster.local',
    foreignIp: '10.96.0.1', foreignName: 'kubernetes.default.svc.corp.example',
  },
  {
    label: 'serviceCidr 10.96.0.0/12, domain corp.example (openssl/ecdsa-p256)',
    inv: makeInventory({ tool: 'openssl', keyAlgorithm: 'ecdsa-p256', edit: (i) => Object.assign(i.cluster, { serviceCidr: '10.96.0.0/12', domain: 'corp.example' }) }),
    serviceIp: '10.96.0.1', domain: 'corp.example', foreignIp: '10.32.0.1', foreignName: 'kubernetes.default.svc.cluster.local',
  },
];

for (const c of cases) {
  test(`${c.label}: the Service IP is the first host of cluster.serviceCidr`, () => {
    const inv = parseInventory(c.inv);
    assert.is(firstHost(c.inv.cluster.serviceCidr), c.serviceIp);
    assert.is(inv.cluster.serviceIp, c.serviceIp);
  });

  test(`${c.label}: s_client accepts kube-apiserver for the Service IP, kubernetes.default.svc.${c.domain} and every SAN; refuses the rest`, async () => {
    const ws = workspace(c.inv, 'tls');
    spaces.push(ws);
    await runPkiJson(ws);
    const srv = await serve(ws, 'kube-apiserver');
    try {
      const good: string[][] = [
        ['-verify_ip', c.serviceIp],
        ['-verify_hostname', `kubernetes.default.svc.${c.domain}`],
        ['-verify_hostname', 'kubernetes'], ['-verify_hostname', 'kubernetes.default'], ['-verify_hostname', 'kubernetes.default.svc'],
        ['-verify_hostname', 'controller-1'],
        ['-verify_ip', '127.0.0.1'], ['-verify_ip', '10.240.0.5'], ['-verify_ip', '10.240.0.10'], ['-verify_ip', '10.240.0.12'],
      ];
      for (const args of good) {
        const r = await connect(ws, srv.port, args);
        assert.ok(r.ok, `${args.join(' ')}: ${r.verify}\n${r.output.slice(-600)}`);
        assert.match(r.output, /Verification: OK/);
        if (args[0] === '-verify_hostname') assert.match(r.output, new RegExp(`Verified peername: ${args[1]!.replace(/\./g, '\\.')}`));
      }
      const bad: [string[], RegExp][] = [
        [['-verify_ip', '10.99.99.99'], /64 \(IP address mismatch\)/],
        [['-verify_ip', c.foreignIp], /64 \(IP address mismatch\)/],
        [['-verify_ip', '10.240.0.20'], /64 \(IP address mismatch\)/], // a worker
        [['-verify_hostname', c.foreignName], /62 \(hostname mismatch\)/],
        [['-verify_hostname', `kubernetes.svc.${c.domain}`], /62 \(hostname mismatch\)/], // the guide's typo
      ];
      for (const [args, why] of bad) {
        const r = await connect(ws, srv.port, args);
        assert.not.ok(r.ok, `${args.join(' ')} was accepted`);
        assert.is.not(r.exit, 0);
        assert.match(r.verify, why, `${args.join(' ')}: ${r.verify}`);
      }
      // Trusting another CA, the same certificate does not verify at all.
      for (const ca of ['etcd-ca', 'front-proxy-ca']) {
        const r = await connect(ws, srv.port, ['-verify_ip', c.serviceIp], { ca });
        assert.not.ok(r.ok, `accepted against ${ca}`);
        assert.match(r.verify, /20 \(unable to get local issuer certificate\)/);
      }
    } finally {
      killTree(srv.child);
      await exited(srv.child);
    }
  });
}

// TLS 1.2, so the server's verdict on the client certificate arrives inside the handshake
// (with 1.3 s_client finishes first and only later reads the alert).
test('mutual TLS: a server trusting kubernetes-ca for clients admits admin, refuses kube-apiserver-etcd-client (etcd-ca)', async () => {
  const ws = spaces[0]!;
  const pki = join(ws.dir, 'pki');
  const srv = await serve(ws, 'kube-apiserver', ['-Verify', '1', '-verify_return_error', '-CAfile', join(pki, 'kubernetes-ca', 'cert.pem')]);
  try {
    const admin = await connect(ws, srv.port, ['-tls1_2', '-verify_hostname', 'kubernetes'], { client: 'admin' });
    assert.ok(admin.ok, admin.output.slice(-600));
    const other = await connect(ws, srv.port, ['-tls1_2', '-verify_hostname', 'kubernetes'], { client: 'apiserver-etcd-client' });
    // The server aborts the handshake: s_client reports an alert instead of a session.
    assert.is.not(other.exit, 0, `etcd-ca client certificate was accepted:\n${other.output.slice(-600)}`);
    assert.match(other.output, /tlsv1 alert unknown ca/);
  } finally {
    killTree(srv.child);
    await exited(srv.child);
  }
});

test('a client-only certificate of the right CA is refused as a server certificate', async () => {
  const ws = spaces[0]!;
  const srv = await serve(ws, 'admin');
  try {
    const r = await connect(ws, srv.port, ['-verify_hostname', 'admin']);
    assert.not.ok(r.ok, 'a clientAuth-only certificate passed as a TLS server');
    assert.match(r.verify, /26 \(unsuitable certificate purpose\)/);
  } finally {
    killTree(srv.child);
    await exited(srv.child);
  }
});

test.run();
