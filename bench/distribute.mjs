#!/usr/bin/env node
// Benchmark for 05-distribute (issue 4, item 6): in one run, a 50-host lab (1 load balancer,
// 3 controllers, 46 workers on a free test /24), 03-pki and 04-kubeconfig for it, then side by
// side, each on hosts wiped clean of the managed directories first:
//   - the baseline (bench/baseline-distribute.sh): for each host in turn, scp its files to /tmp,
//     then ssh to `install` them into place, as Kubernetes the Hard Way does;
//   - `node scripts/05-distribute.mjs` (default --parallel 10), which also verifies every
//     certificate and key pair on every host with openssl.
// Repeated (median reported), plus an unchanged re-run of 05. Prints both times, the ratio,
// PASS/FAIL against the target (05 <= 0.25x the baseline), SSH connections per host (counted in
// each lab host's sshd log: "Accepted publickey") and peak memory (max RSS, /usr/bin/time).
// The lab is destroyed at the end, also on failure or Ctrl-C.
//
//   sudo node bench/distribute.mjs [--hosts 50] [--repeat 3] [--parallel 10] [--keep]
//
// A script, not a test: it needs root (the lab), cfssl, openssl, ssh, scp and /usr/bin/time.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, mkdirSync, rmSync, existsSync, chmodSync } from 'node:fs';
import { tmpdir, availableParallelism, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { register } from 'tsx/esm/api';

register();
const { freeTestSubnet, inventoryFor, forceCleanup } = await import('../test/helpers/lab.ts');
const { LAB_ROOT } = await import('../lib/lab/plan.ts');
const { childrenOf } = await import('../lib/lab/system.ts');

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opts } = parseArgs({
  options: {
    hosts: { type: 'string', default: '50' },
    repeat: { type: 'string', default: '3' },
    parallel: { type: 'string', default: '10' },
    keep: { type: 'boolean', default: false },
  },
});
const HOSTS = Number(opts.hosts);
const REPEAT = Number(opts.repeat);
const TARGET = 0.25;
if (process.getuid?.() !== 0) {
  process.stderr.write('bench/distribute.mjs needs root: it builds a lab of network namespaces\n');
  process.exit(2);
}
if (!(HOSTS >= 5 && HOSTS <= 250)) throw new Error('--hosts must be 5..250 (one /24)');

const scratch = mkdtempSync(join(tmpdir(), 'hardway-bench-dist-'));
chmodSync(scratch, 0o755);
const cluster = `bd-${randomBytes(2).toString('hex')}`;
const cidr = await freeTestSubnet();
const base = cidr.split('.').slice(0, 3).join('.');
const hosts = [
  { name: 'lb-0', role: 'loadbalancer', privateIp: `${base}.5` },
  ...[0, 1, 2].map((i) => ({ name: `controller-${i}`, role: 'controller', privateIp: `${base}.${10 + i}` })),
  ...Array.from({ length: HOSTS - 4 }, (_, i) => ({ name: `worker-${i}`, role: 'worker', privateIp: `${base}.${20 + i}` })),
];
const dir = join(scratch, 'ws');
const inventoryPath = join(scratch, 'inventory.json');
writeFileSync(inventoryPath, `${JSON.stringify(inventoryFor(cluster, cidr, hosts), null, 2)}\n`);

let cleaning;
/** The child running now, ended first on Ctrl-C so that it does not race the teardown. */
let current;
async function teardown() {
  cleaning ??= (async () => {
    process.stderr.write(`tearing down lab ${cluster} ...\n`);
    try {
      await run(process.execPath, [join(ROOT, 'scripts/01-infra.mjs'), '--inventory', inventoryPath, '--dir', dir, '--destroy']);
    } catch (e) {
      process.stderr.write(`01-infra --destroy failed (${e.message.split('\n')[0]}); removing by name\n`);
    }
    await forceCleanup(cluster, hosts.map((h) => h.name), opts.keep ? undefined : scratch);
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    current?.kill('SIGTERM');
    void teardown().finally(() => process.exit(130));
  });
}

/** Runs a command; resolves with wall seconds and max RSS (KiB) from /usr/bin/time; throws on failure. */
function run(cmd, args, { time = false } = {}) {
  const timeFile = join(scratch, `time-${randomBytes(3).toString('hex')}`);
  const [c, a] = time ? ['/usr/bin/time', ['-f', '%e %M', '-o', timeFile, cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(c, a, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    current = child;
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      let maxRssKiB;
      if (time && existsSync(timeFile)) maxRssKiB = Number(readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ')[1]);
      if (code === 0) resolve({ seconds, maxRssKiB, stdout: out, stderr: err });
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${err.slice(-3000)}`));
    });
  });
}

const step = (name, extra = [], o = {}) => run(process.execPath, [join(ROOT, 'scripts', `${name}.mjs`), '--inventory', inventoryPath, '--dir', dir, ...extra], o);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Runs `cmd` inside a lab host's namespaces (not over SSH, so it is not counted as a connection). */
function inHost(name, cmd) {
  const rec = JSON.parse(readFileSync(join(LAB_ROOT, cluster, 'lab.json'), 'utf8'));
  const pid = childrenOf(rec.hosts[name].holderPid)[0];
  return run('nsenter', ['-t', String(pid), '-m', '-u', '-n', '-p', '--', 'sh', '-c', cmd]);
}
const MANAGED = '/var/lib/kubernetes /etc/etcd /var/lib/kubelet /var/lib/kube-proxy';
async function wipeHosts() {
  for (const h of hosts) await inHost(h.name, `rm -rf ${MANAGED}`);
}
/** "Accepted publickey" lines in each host's sshd log so far. */
function acceptedByHost() {
  return Object.fromEntries(hosts.map((h) => {
    const log = join(LAB_ROOT, cluster, h.name, 'console.log');
    return [h.name, existsSync(log) ? (readFileSync(log, 'utf8').match(/Accepted publickey/g) ?? []).length : 0];
  }));
}
/** New connections per host since `before`: min and max over the hosts that receive files, and the load balancer's. */
function connectionsSince(before) {
  const now = acceptedByHost();
  const per = hosts.filter((h) => h.role !== 'loadbalancer').map((h) => now[h.name] - before[h.name]);
  return { min: Math.min(...per), max: Math.max(...per), lb: now['lb-0'] - before['lb-0'] };
}
/** Every host holds every file of the map with the right checksum (checked without SSH). */
async function checkInstalled(manifest) {
  for (const h of hosts) {
    const dests = manifest.entries.flatMap((e) => e.destinations.filter((d) => d.host === h.name).map((d) => ({ ...d, sha256: e.sha256 })));
    if (dests.length === 0) continue;
    const out = (await inHost(h.name, dests.map((d) => `echo "$(sha256sum < ${d.path} | cut -c1-64) $(stat -c %a ${d.path}) ${d.path}"`).join('\n'))).stdout;
    for (const d of dests) {
      if (!out.includes(`${d.sha256} ${d.mode.replace(/^0/, '')} ${d.path}`)) throw new Error(`${h.name}:${d.path} is not as the manifest says after a run:\n${out}`);
    }
  }
}

const f2 = (x) => x.toFixed(2);
const mib = (kib) => `${(kib / 1024).toFixed(0)} MiB`;
try {
  process.stdout.write([
    `# 05-distribute benchmark, ${new Date().toISOString()}`,
    `machine: ${availableParallelism()} CPUs (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}`,
    `lab ${cluster} on ${cidr}: ${hosts.length} hosts (1 load balancer, 3 controllers, ${hosts.length - 4} workers); repeat ${REPEAT} (medians); 05 with --parallel ${opts.parallel}`,
    '',
  ].join('\n'));
  // The floor under any 05 run: Node, tsx and loading the step, doing nothing (--help).
  await step('05-distribute', ['--help']);
  const floor = await step('05-distribute', ['--help'], { time: true });
  const infra = await step('01-infra');
  process.stderr.write(`01-infra: ${f2(infra.seconds)}s for ${hosts.length} hosts\n`);
  await step('03-pki');
  await step('04-kubeconfig');
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));

  // The baseline's inputs: the same files, under the flat unique names of the guide's working directory.
  const src = join(scratch, 'baseline-src');
  mkdirSync(src);
  const list = [];
  let bytes = 0;
  for (const h of hosts) {
    for (const e of manifest.entries) {
      for (const d of e.destinations.filter((x) => x.host === h.name)) {
        const flat = e.path.replace(/\//g, '_');
        if (!existsSync(join(src, flat))) copyFileSync(join(dir, e.path), join(src, flat));
        list.push(`${h.name} ${h.privateIp} ${flat} ${d.path} ${d.mode}`);
        bytes += readFileSync(join(dir, e.path)).length;
      }
    }
  }
  const listPath = join(scratch, 'files.txt');
  writeFileSync(listPath, `${list.join('\n')}\n`);
  process.stderr.write(`${list.length} file installs, ${(bytes / 1024).toFixed(0)} KiB in all\n`);
  const baselineArgs = [join(ROOT, 'bench/baseline-distribute.sh'), listPath, src, join(dir, 'ssh/id_ed25519'), join(dir, 'ssh/known_hosts')];

  const base = [];
  const ours = [];
  let baseConn;
  let oursConn;
  for (let i = 0; i < REPEAT; i++) {
    await wipeHosts();
    let before = acceptedByHost();
    const b = await run('bash', baselineArgs, { time: true });
    baseConn = connectionsSince(before);
    await checkInstalled(manifest);
    base.push(b);

    await wipeHosts();
    before = acceptedByHost();
    const o = await step('05-distribute', ['--parallel', opts.parallel], { time: true });
    oursConn = connectionsSince(before);
    await checkInstalled(manifest);
    ours.push(o);
    process.stderr.write(`#${i + 1}: baseline ${f2(b.seconds)}s (${mib(b.maxRssKiB)}), 05-distribute ${f2(o.seconds)}s (${mib(o.maxRssKiB)})\n`);
  }
  let before = acceptedByHost();
  const rerun = await step('05-distribute', ['--parallel', opts.parallel, '--json'], { time: true });
  const rerunConn = connectionsSince(before);
  const result = JSON.parse(rerun.stdout);
  if (!result.hosts.every((h) => h.counts.changed === 0)) throw new Error('the unchanged re-run changed something');

  const tb = median(base.map((r) => r.seconds));
  const to = median(ours.map((r) => r.seconds));
  const ratio = to / tb;
  const conn = (c) => `${c.min === c.max ? c.min : `${c.min}-${c.max}`} (load balancer: ${c.lb})`;
  process.stdout.write([
    '',
    '| run | wall time (s, median) | vs baseline | SSH connections per host | peak memory (max RSS) |',
    '|---|---:|---:|---:|---:|',
    `| baseline: scp + ssh per host, in turn | ${f2(tb)} | 1.00x | ${conn(baseConn)} | ${mib(Math.max(...base.map((r) => r.maxRssKiB)))} (largest process of the loop) |`,
    `| 05-distribute, fresh hosts | ${f2(to)} | ${f2(ratio)}x | ${conn(oursConn)} | ${mib(Math.max(...ours.map((r) => r.maxRssKiB)))} |`,
    `| 05-distribute, unchanged re-run | ${f2(rerun.seconds)} | ${f2(rerun.seconds / tb)}x | ${conn(rerunConn)} | ${mib(rerun.maxRssKiB)} |`,
    '',
    `${hosts.length} hosts, ${list.length} file installs (${(bytes / 1024).toFixed(0)} KiB). 05-distribute also verifies every certificate and key pair on every host with openssl; the baseline checks nothing.`,
    `Node + tsx + loading the step with no work (\`05-distribute --help\`): ${f2(floor.seconds)}s, ${mib(floor.maxRssKiB)}.`,
    `All runs (s): baseline [${base.map((r) => f2(r.seconds)).join(', ')}], 05-distribute [${ours.map((r) => f2(r.seconds)).join(', ')}]`,
    '',
    `Target: 05-distribute <= ${TARGET}x the baseline: ${f2(ratio)}x ${ratio <= TARGET ? 'PASS' : 'FAIL'}`,
    `Target: one SSH connection per host: ${[oursConn, rerunConn].every((c) => c.min === 1 && c.max === 1 && c.lb === 1) ? 'PASS' : 'FAIL'} (baseline: ${conn(baseConn)})`,
    '',
  ].join('\n'));
  process.exitCode = ratio <= TARGET && [oursConn, rerunConn].every((c) => c.max === 1) ? 0 : 1;
} catch (e) {
  process.stderr.write(`benchmark failed: ${e.stack ?? e}\n`);
  process.exitCode = 1;
} finally {
  await teardown();
  if (opts.keep) process.stdout.write(`kept: ${scratch}\n`);
}
