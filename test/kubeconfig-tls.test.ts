// 04-kubeconfig against real clients: every generated kubeconfig loads with
// @kubernetes/client-node (and kubectl when installed), and its credentials get through a local
// TLS server that presents the real kube-apiserver certificate and requires a client certificate
// signed by kubernetes-ca. Credentials from another cluster's CA are refused. Loopback only.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { KubeConfig, VersionApi } from '@kubernetes/client-node';
import { readManifest } from '../lib/manifest.ts';
import { inventoryJson, must, pkiWorkspace, type Workspace } from './helpers/kubeconfig.ts';

// Node warns (DEP0123) when tls-server-name is an IP address, as it is for every kubeconfig
// here; Go clients (kubectl) verify IP server names the same way without complaint.
process.removeAllListeners('warning');

let A: Workspace; // the cluster under test (RSA keys, cfssl)
let B: Workspace; // another cluster: its own CAs (ECDSA keys)
let server: ApiServer;
const scratch = mkdtempSync(join(tmpdir(), 'hardway-kubeconfig-tls-'));
const hasKubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;

interface ApiServer {
  port: number;
  /** Who got through: subject of each accepted client certificate. */
  seen: { cn: string; o: string[] }[];
  /** Handshakes the server refused, with the reason its certificate check gave. */
  refused: { error: string; authorizationError?: string }[];
  close(): Promise<void>;
}

const fileOf = (ws: Workspace, id: string) => {
  const e = readManifest(ws.dir)!.entries.find((x) => x.id === id);
  if (!e) throw new Error(`no manifest entry ${id} in ${ws.dir}`);
  return readFileSync(join(ws.dir, e.path), 'utf8');
};

/** A stand-in for kube-apiserver's TLS front door: its certificate, client certs required. */
function startApiServer(ws: Workspace): Promise<ApiServer> {
  const seen: ApiServer['seen'] = [];
  const refused: ApiServer['refused'] = [];
  const srv = https.createServer(
    {
      cert: fileOf(ws, 'kube-apiserver/cert'),
      key: fileOf(ws, 'kube-apiserver/key'),
      ca: fileOf(ws, 'kubernetes-ca/cert'),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      const o = peer.subject.O;
      seen.push({ cn: String(peer.subject.CN), o: o === undefined ? [] : ([] as string[]).concat(o) });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ major: '1', minor: '32', gitVersion: 'v1.32.0-hardway-test', gitCommit: '', gitTreeState: '', buildDate: '', goVersion: '', compiler: '', platform: 'linux/amd64' }));
    },
  );
  // With TLS 1.3 a refused client certificate shows up as a reset; the reason is on the socket.
  srv.on('tlsClientError', (e, socket) => refused.push({ error: e.message, authorizationError: String(socket.authorizationError ?? '') }));
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () =>
      resolve({
        port: (srv.address() as AddressInfo).port,
        seen,
        refused,
        close: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }),
      }),
    );
  });
}

/**
 * A copy of a kubeconfig that reaches the loopback server, with tls-server-name set to the host
 * of its real server, so the client still checks that name against the certificate's SANs.
 */
function loopbackCopy(path: string, opts: { serverName?: string; caFrom?: string } = {}): string {
  const doc = parseYaml(readFileSync(path, 'utf8'));
  const cluster = doc.clusters[0].cluster;
  cluster['tls-server-name'] = opts.serverName ?? new URL(cluster.server).hostname;
  cluster.server = `https://127.0.0.1:${server.port}`;
  if (opts.caFrom) cluster['certificate-authority-data'] = parseYaml(readFileSync(opts.caFrom, 'utf8')).clusters[0].cluster['certificate-authority-data'];
  const out = join(scratch, `${Math.random().toString(36).slice(2)}.kubeconfig`);
  writeFileSync(out, stringifyYaml(doc), { mode: 0o600 });
  return out;
}

async function getVersion(kubeconfig: string): Promise<string> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const v = await kc.makeApiClient(VersionApi).getCode();
  return v.gitVersion;
}

/** Runs kubectl without blocking the event loop (the server lives in this process). */
function kubectl(kubeconfig: string, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn('kubectl', ['--kubeconfig', kubeconfig, '--cache-dir', join(scratch, 'kube-cache'), '--request-timeout', '20s', ...args], {
    env: { ...process.env, HOME: scratch, KUBECONFIG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b));
  child.stderr.on('data', (b: Buffer) => (stderr += b));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) => child.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); }));
}

const expected: Record<string, { server: string; user: string; group?: string }> = {
  admin: { server: 'https://10.240.0.5:6443', user: 'admin', group: 'system:masters' },
  'admin-controller': { server: 'https://127.0.0.1:6443', user: 'admin', group: 'system:masters' },
  'kubelet-worker-0': { server: 'https://10.240.0.5:6443', user: 'system:node:worker-0', group: 'system:nodes' },
  'kubelet-worker-1': { server: 'https://10.240.0.5:6443', user: 'system:node:worker-1', group: 'system:nodes' },
  'kube-proxy': { server: 'https://10.240.0.5:6443', user: 'system:kube-proxy' },
  'kube-controller-manager': { server: 'https://127.0.0.1:6443', user: 'system:kube-controller-manager' },
  'kube-scheduler': { server: 'https://127.0.0.1:6443', user: 'system:kube-scheduler' },
};
const kubeconfigs = (ws: Workspace) =>
  readManifest(ws.dir)!.entries.filter((e) => e.kind === 'kubeconfig').map((e) => ({ name: e.id.replace('kubeconfig/', ''), path: join(ws.dir, e.path), certPath: e }));

test.before(async () => {
  A = pkiWorkspace(inventoryJson({ controllers: 2 }));
  must(A.run('04-kubeconfig'), '04-kubeconfig A');
  B = pkiWorkspace(inventoryJson({ keyAlgorithm: 'ecdsa-p256' }));
  must(B.run('04-kubeconfig'), '04-kubeconfig B');
  server = await startApiServer(A);
});

test.after(async () => {
  await server?.close();
  A?.remove();
  B?.remove();
  rmSync(scratch, { recursive: true, force: true });
});

test('the manifest lists every planned kubeconfig, and only those', () => {
  assert.equal(kubeconfigs(A).map((k) => k.name).sort(), Object.keys(expected).sort());
});

test('every kubeconfig loads with @kubernetes/client-node and embeds the CA and its own certificate and key', () => {
  const ca = fileOf(A, 'kubernetes-ca/cert');
  for (const { name, path } of kubeconfigs(A)) {
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    const want = expected[name]!;
    const cluster = kc.getCurrentCluster()!;
    const user = kc.getCurrentUser()!;
    assert.is(cluster.name, 'hardway-test', `${name}: cluster name from the inventory`);
    assert.is(cluster.server, want.server, `${name}: server`);
    assert.is(user.name, want.user, `${name}: user`);
    assert.is(kc.getCurrentContext(), `${want.user}@hardway-test`);
    assert.is(Buffer.from(cluster.caData!, 'base64').toString(), ca, `${name}: the kubernetes-ca certificate`);
    const certId = name === 'admin-controller' ? 'admin' : name;
    assert.is(Buffer.from(user.certData!, 'base64').toString(), fileOf(A, `${certId}/cert`), `${name}: its client certificate`);
    assert.is(Buffer.from(user.keyData!, 'base64').toString(), fileOf(A, `${certId}/key`), `${name}: its client key`);
  }
});

test('every kubeconfig authenticates to a server that requires kubernetes-ca client certificates (client-node)', async () => {
  for (const { name, path } of kubeconfigs(A)) {
    const before = server.seen.length;
    assert.is(await getVersion(loopbackCopy(path)), 'v1.32.0-hardway-test', name);
    const who = server.seen[before]!;
    assert.ok(who, `${name}: the server saw the request`);
    assert.is(who.cn, expected[name]!.user, `${name}: the API server sees the right user`);
    if (expected[name]!.group) assert.ok(who.o.includes(expected[name]!.group!), `${name}: and group`);
  }
});

(hasKubectl ? test : test.skip)('every kubeconfig loads with kubectl and authenticates with it', async () => {
  for (const { name, path } of kubeconfigs(A)) {
    const view = await kubectl(path, 'config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server} {.users[0].name}');
    assert.is(view.status, 0, `${name}: kubectl config view: ${view.stderr}`);
    assert.is(view.stdout, `${expected[name]!.server} ${expected[name]!.user}`);
    const before = server.seen.length;
    const got = await kubectl(loopbackCopy(path), 'get', '--raw', '/version');
    assert.is(got.status, 0, `${name}: kubectl get --raw /version: ${got.stderr}`);
    assert.is(JSON.parse(got.stdout).gitVersion, 'v1.32.0-hardway-test');
    assert.is(server.seen[before]?.cn, expected[name]!.user);
  }
});

test('a client certificate signed by another CA is refused by the server', async () => {
  // B's admin certificate and key, but A's CA so the client itself trusts the server.
  const forged = loopbackCopy(join(B.dir, 'kubeconfigs', 'admin.kubeconfig'), { caFrom: join(A.dir, 'kubeconfigs', 'admin.kubeconfig') });
  const seen = server.seen.length;
  const refused = server.refused.length;
  let error: Error | undefined;
  try {
    await getVersion(forged);
  } catch (e) {
    error = e as Error;
  }
  assert.ok(error, 'the request must fail');
  assert.is(server.seen.length, seen, 'the handler never ran');
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(server.refused.length > refused, 'the server refused the handshake');
  assert.match(String(server.refused.at(-1)?.authorizationError), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|CERT_SIGNATURE_FAILURE/);
  if (hasKubectl) {
    const before = server.refused.length;
    const k = await kubectl(forged, 'get', '--raw', '/version');
    assert.is.not(k.status, 0, 'kubectl fails too');
    assert.is(server.seen.length, seen);
    assert.ok(server.refused.slice(before).some((r) => /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/.test(r.authorizationError ?? '')), 'refused for its CA');
  }
});

test("a kubeconfig refuses a server its CA did not sign (another cluster's kubeconfig)", async () => {
  const other = loopbackCopy(join(B.dir, 'kubeconfigs', 'admin.kubeconfig'));
  const seen = server.seen.length;
  try {
    await getVersion(other);
    assert.unreachable('must not trust A.kube-apiserver');
  } catch (e) {
    assert.instance(e, Error);
    assert.match(JSON.stringify({ m: (e as Error).message, c: (e as { code?: string }).code, cause: String((e as { cause?: unknown }).cause) }), /certificate|self[- ]signed|verify/i);
  }
  assert.is(server.seen.length, seen);
});

test('the server name is checked against the certificate: a name outside its SANs fails', async () => {
  const path = join(A.dir, 'kubeconfigs', 'kube-proxy.kubeconfig');
  const seen = server.seen.length;
  let error: Error | undefined;
  try {
    await getVersion(loopbackCopy(path, { serverName: 'not-in-the-san.example' }));
  } catch (e) {
    error = e as Error;
  }
  assert.ok(error, 'must fail');
  assert.match(JSON.stringify({ m: error!.message, c: (error as { code?: string }).code, cause: String((error as { cause?: unknown }).cause) }), /altname|not in the cert|does not match|ALTNAME/i);
  assert.is(server.seen.length, seen);
});

test.run();
