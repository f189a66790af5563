// A real etcd member (Debian etcd-server) on 127.0.0.1, client-certificate auth on, serving the
// etcd-server certificate 03-pki signed: etcdctl gets in with kube-apiserver-etcd-client and is
// refused with the admin certificate (kubernetes-ca) or with none. Loopback only.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { makeInventory, workspace, runPkiJson, freePort, killTree, exited, run, sleep, type Workspace } from './helpers/pki.ts';

const started: ChildProcess[] = [];
const spaces: Workspace[] = [];
const cleanup = () => {
  for (const c of started) killTree(c);
};
process.on('exit', cleanup);
test.after(async () => {
  cleanup();
  await Promise.all(started.map(exited));
  for (const ws of spaces) ws.remove();
});

interface Etcd {
  port: number;
  log: () => string;
  child: ChildProcess;
}

/** Starts one etcd member serving `<id>/cert.pem`, trusting only etcd-ca for clients; waits until it answers. */
async function startEtcd(ws: Workspace, serverId: string): Promise<Etcd> {
  const pki = join(ws.dir, 'pki');
  const [port, peerPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn('etcd', [
    '--name', 'test', '--data-dir', join(ws.root, 'etcd-data'),
    '--listen-client-urls', `https://127.0.0.1:${port}`, '--advertise-client-urls', `https://127.0.0.1:${port}`,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `test=${peer}`,
    '--listen-metrics-urls', `http://127.0.0.1:${metricsPort}`,
    '--client-cert-auth', '--trusted-ca-file', join(pki, 'etcd-ca', 'cert.pem'),
    '--cert-file', join(pki, serverId, 'cert.pem'), '--key-file', join(pki, serverId, 'key.pem'),
  ], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { PATH: process.env.PATH, HOME: ws.root } });
  started.push(child);
  let log = '';
  child.stdout!.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  const etcd = { port, child, log: () => log };
  for (let i = 0; i < 60; i++) {
    if (child.exitCode !== null) throw new Error(`etcd exited ${child.exitCode}:\n${log}`);
    const h = await etcdctl(ws, etcd, 'apiserver-etcd-client', ['endpoint', 'health']);
    if (h.code === 0) return etcd;
    await sleep(250);
  }
  throw new Error(`etcd did not become healthy:\n${log}`);
}

/** etcd's log since `from`, once it matches `re` (or after 3 s, whatever it says by then). */
async function logAfter(etcd: Etcd, from: number, re: RegExp): Promise<string> {
  for (let i = 0; i < 60 && !re.test(etcd.log().slice(from)); i++) await sleep(50);
  return etcd.log().slice(from);
}

function etcdctl(ws: Workspace, etcd: Etcd, client: string | null, args: string[], opts: { ca?: string; host?: string } = {}) {
  const pki = join(ws.dir, 'pki');
  return run('etcdctl', [
    '--endpoints', `https://${opts.host ?? '127.0.0.1'}:${etcd.port}`, '--dial-timeout', '2s', '--command-timeout', '3s',
    '--cacert', join(pki, opts.ca ?? 'etcd-ca', 'cert.pem'),
    ...(client ? ['--cert', join(pki, client, 'cert.pem'), '--key', join(pki, client, 'key.pem')] : []),
    ...args,
  ], { env: { PATH: process.env.PATH, ETCDCTL_API: '3' }, timeoutMs: 20_000 });
}

for (const [tool, alg] of [['cfssl', 'rsa-2048'], ['openssl', 'ecdsa-p256']] as const) {
  test(`${tool}/${alg}: etcd with client-cert auth admits kube-apiserver-etcd-client and refuses admin`, async () => {
    const ws = workspace(makeInventory({ tool, keyAlgorithm: alg }), `etcd-${tool}`);
    spaces.push(ws);
    await runPkiJson(ws);
    const etcd = await startEtcd(ws, 'etcd-server-controller-0');
    try {
      const value = `signed-by-${tool}-${alg}-${Date.now()}`;
      const put = await etcdctl(ws, etcd, 'apiserver-etcd-client', ['put', '/hardway/test', value]);
      assert.is(put.code, 0, put.stderr);
      assert.is(put.stdout.trim(), 'OK');
      // The server certificate names both loopback forms: dial it by name too.
      const get = await etcdctl(ws, etcd, 'apiserver-etcd-client', ['get', '/hardway/test', '--print-value-only'], { host: 'localhost' });
      assert.is(get.code, 0, get.stderr);
      assert.is(get.stdout.trim(), value);

      const before = etcd.log().length;
      const admin = await etcdctl(ws, etcd, 'admin', ['put', '/hardway/test', 'written-by-admin']);
      assert.is.not(admin.code, 0, `etcdctl with the admin certificate was let in: ${admin.stdout}`);
      assert.match(admin.stderr, /context deadline exceeded|bad certificate/);
      // etcd itself says it rejected the connection (Go's client withholds a certificate the server's CA list does not name).
      const rejected = /rejected connection from "127\.0\.0\.1:\d+"/;
      assert.match(await logAfter(etcd, before, rejected), rejected);

      // Forcing the admin certificate onto the wire: etcd's TLS layer refuses it as signed by an unknown authority.
      const pki = join(ws.dir, 'pki');
      const before2 = etcd.log().length;
      const forced = await run('openssl', ['s_client', '-connect', `127.0.0.1:${etcd.port}`, '-CAfile', join(pki, 'etcd-ca', 'cert.pem'),
        '-cert', join(pki, 'admin', 'cert.pem'), '-key', join(pki, 'admin', 'key.pem'), '-verify_return_error'], { input: '', timeoutMs: 10_000 });
      const said = await logAfter(etcd, before2, /rejected connection[^\n]*(unknown authority|bad certificate)/);
      assert.match(said, /rejected connection[^\n]*(unknown authority|bad certificate)/, `openssl s_client said: ${forced.stdout.slice(-400)}${forced.stderr}`);

      const none = await etcdctl(ws, etcd, null, ['get', '/hardway/test']);
      assert.is.not(none.code, 0, 'etcdctl without a client certificate was let in');

      // etcdctl trusting kubernetes-ca instead of etcd-ca refuses the etcd server certificate.
      const wrongCa = await etcdctl(ws, etcd, 'apiserver-etcd-client', ['get', '/hardway/test'], { ca: 'kubernetes-ca' });
      assert.is.not(wrongCa.code, 0, 'etcd-server certificate accepted against kubernetes-ca');

      // The refused writes changed nothing.
      const after = await etcdctl(ws, etcd, 'apiserver-etcd-client', ['get', '/hardway/test', '--print-value-only']);
      assert.is(after.stdout.trim(), value);
    } finally {
      killTree(etcd.child);
      await exited(etcd.child);
    }
  });
}

test.run();
