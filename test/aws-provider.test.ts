// The aws provider against a loopback EC2 (test/fixtures/aws/fake-ec2.ts): every call goes
// through the SDK's real request signing and serialization and the fake's real XML answers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync, statSync, unlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { EC2Client, DeleteVpcCommand, DeleteSecurityGroupCommand, DetachInternetGatewayCommand } from '@aws-sdk/client-ec2';
import { FakeEc2, IMAGE_NOBLE_NEW, type FakeOptions } from './fixtures/aws/fake-ec2.ts';
import { workspace, context, provider, readJson } from './fixtures/aws/helpers.ts';
import { loadInventory } from '../lib/inventory.ts';

const CLUSTER = 'hardway';
const HOSTS = { 'lb-0': '10.240.0.5', 'controller-0': '10.240.0.10', 'controller-1': '10.240.0.11', 'controller-2': '10.240.0.12', 'worker-0': '10.240.0.20', 'worker-1': '10.240.0.21' };

async function setup(opts: FakeOptions = {}, edit?: (inv: Record<string, any>) => void) {
  const fake = await FakeEc2.start(opts);
  const ws = workspace(edit);
  return { fake, ws, done: async () => (await fake.close(), ws.cleanup()) };
}

function hostOf(tags: Map<string, string>) {
  return tags.get('hardway:host')!;
}

test('first run creates the network, the key pair, six instances and the Elastic IP, and records them', async () => {
  const { fake, ws, done } = await setup({ pendingPolls: 2 });
  try {
    const ctx = context(ws);
    const result = await provider(fake).up(ctx);
    assert.ok(result.ok, ctx.log.lines.join('\n'));

    // The network.
    assert.is(fake.vpcs.size, 1);
    const vpc = [...fake.vpcs.values()][0]!;
    assert.is(vpc.cidr, '10.240.0.0/24');
    assert.ok(vpc.dnsSupport && vpc.dnsHostnames, 'DNS support and hostnames on');
    const subnet = [...fake.subnets.values()][0]!;
    assert.is(fake.subnets.size, 1);
    assert.is(subnet.vpcId, vpc.id);
    assert.is(subnet.cidr, '10.240.0.0/24');
    const igw = [...fake.igws.values()][0]!;
    assert.is(igw.vpcId, vpc.id);
    const rtb = [...fake.rtbs.values()].find((r) => r.tags.get('hardway:cluster') === CLUSTER)!;
    assert.equal(rtb.routes, [{ dest: '0.0.0.0/0', gatewayId: igw.id }]);
    assert.equal(rtb.assocs.map((a) => a.subnetId), [subnet.id]);
    const sg = [...fake.sgs.values()].find((g) => !g.isDefault)!;
    assert.equal(
      sg.rules.map((r) => `${r.proto} ${r.from ?? ''}-${r.to ?? ''} ${r.cidr}`).sort(),
      ['-1 - 10.200.0.0/16', '-1 - 10.240.0.0/24', 'icmp -1--1 203.0.113.0/24', 'tcp 22-22 203.0.113.0/24', 'tcp 6443-6443 203.0.113.0/24'],
    );

    // The key pair is the local key, which stays in the workspace, 0600.
    const keyPath = join(ws.dir, 'ssh', 'id_ed25519');
    assert.is(statSync(keyPath).mode & 0o777, 0o600);
    const pub = readFileSync(`${keyPath}.pub`, 'utf8').split(' ')[1]!;
    const kp = [...fake.keys.values()][0]!;
    assert.is(kp.name, 'hardway-ssh');
    assert.is(kp.fingerprint.replace(/=+$/, ''), (await import('node:crypto')).createHash('sha256').update(Buffer.from(pub, 'base64')).digest('base64').replace(/=+$/, ''));
    assert.not.ok(fake.calls.some((c) => Object.values(c.params).some((v) => v.includes('PRIVATE KEY'))), 'the private key never leaves');

    // Six instances at the inventory's addresses, each with a public IP and source/dest check off.
    const insts = fake.liveInstances();
    assert.is(insts.length, 6);
    for (const i of insts) {
      const host = hostOf(i.tags) as keyof typeof HOSTS;
      assert.is(i.privateIp, HOSTS[host], host);
      assert.ok(i.publicIp, `${host} has a public IP`);
      assert.is(i.state, 'running');
      assert.is(i.sourceDestCheck, false);
      assert.equal(i.sgIds, [sg.id]);
      assert.is(i.keyName, 'hardway-ssh');
      assert.is(i.imageId, IMAGE_NOBLE_NEW, 'newest Ubuntu LTS from Canonical');
      assert.is(i.type, 't3.small');
      assert.is(i.volumeSize, '20');
      assert.is(i.httpTokens, 'required');
      assert.ok(i.clientToken?.startsWith('hardway-'));
      assert.is(i.tags.get('hardway:cluster'), CLUSTER);
      assert.is(i.tags.get('hardway:role'), host === 'lb-0' ? 'loadbalancer' : host.replace(/-\d$/, ''));
      assert.is(i.volumeTags.get('hardway:cluster'), CLUSTER);
      assert.is(i.networkInterfaceTags.get('hardway:host'), host);
    }
    for (const c of fake.calls.filter((x) => x.action === 'RunInstances')) {
      assert.is(c.params['NetworkInterface.1.AssociatePublicIpAddress'], 'true');
      assert.ok(c.params['NetworkInterface.1.PrivateIpAddress']);
      assert.is(c.params.SubnetId, undefined, 'the NetworkInterfaces form, not instance-level SubnetId');
    }

    // The Elastic IP belongs to the load balancer.
    const eip = [...fake.addresses.values()][0]!;
    const lb = insts.find((i) => hostOf(i.tags) === 'lb-0')!;
    assert.is(eip.instanceId, lb.id);
    assert.is(lb.publicIp, eip.publicIp);

    // Everything carries the cluster tag; every call was signed with the credentials given.
    assert.is(fake.tagged(CLUSTER).length, 1 + 1 + 1 + 1 + 1 + 1 + 6 + 1);
    assert.ok(fake.calls.every((c) => c.accessKeyId === 'AKIDFAKEHARDWAY'));

    // The records.
    const hosts = readJson(join(ws.dir, 'infra', 'hosts.json'));
    for (const i of insts) assert.equal(hosts.hosts[hostOf(i.tags)], { publicIp: i.publicIp, instanceId: i.id });
    assert.is(hosts.hosts['lb-0'].publicIp, eip.publicIp);
    const ssh = readJson(join(ws.dir, 'infra', 'ssh.json'));
    for (const i of insts) assert.equal(ssh.hosts[hostOf(i.tags)], { address: i.publicIp, port: 22, user: 'ubuntu' });
    const known = readFileSync(join(ws.dir, 'ssh', 'known_hosts'), 'utf8').trim().split('\n');
    assert.is(known.length, 6 * 2 * 2, 'two keys under two addresses per host');
    for (const i of insts) {
      for (const k of i.hostKeys) {
        const b64 = k.blob.toString('base64');
        assert.ok(known.includes(`${i.publicIp} ${k.type} ${b64}`), `${hostOf(i.tags)} ${k.type} under the public IP`);
        assert.ok(known.includes(`${i.privateIp} ${k.type} ${b64}`), `${hostOf(i.tags)} ${k.type} under the private IP`);
      }
    }
    const record = readJson(join(ws.dir, 'infra', 'aws.json'));
    assert.equal(record.elasticIp, { allocationId: eip.allocationId, publicIp: eip.publicIp, host: 'lb-0' });

    // The loader merges the records: 03-pki sees the public addresses.
    const merged = loadInventory(ws.inventory, ws.dir);
    assert.is(merged.loadBalancer.publicIp, eip.publicIp);
    for (const h of merged.hosts) assert.is(h.publicIp, insts.find((i) => hostOf(i.tags) === h.name)!.publicIp);
  } finally {
    await done();
  }
});

test('a second run finds everything by tag and changes nothing', async () => {
  const { fake, ws, done } = await setup();
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    const before = fake.calls.length;
    const known = readFileSync(join(ws.dir, 'ssh', 'known_hosts'), 'utf8');
    const ctx = context(ws);
    const result = await provider(fake).up(ctx);
    assert.ok(result.ok);
    const second = fake.calls.slice(before);
    assert.equal(second.filter((c) => !/^Describe/.test(c.action)).map((c) => c.action), [], 'only Describe calls: no create, no modify, no console read');
    assert.equal(result.changes, []);
    assert.is(fake.liveInstances().length, 6);
    assert.is(fake.vpcs.size, 1);
    assert.is(readFileSync(join(ws.dir, 'ssh', 'known_hosts'), 'utf8'), known);
    assert.ok(ctx.log.lines.includes('vpc: already exists (' + [...fake.vpcs.keys()][0] + ', 10.240.0.0/24)'));
  } finally {
    await done();
  }
});

test('a run that fails half way resumes: the next run creates only what is missing', async () => {
  const { fake, ws, done } = await setup();
  try {
    fake.fault({ action: 'RunInstances', skip: 3, code: 'InsufficientInstanceCapacity', message: 'We currently do not have sufficient t3.small capacity in the Availability Zone you requested.' });
    const err = await provider(fake).up(context(ws)).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.ok(err, 'the first run fails');
    assert.match(err!.message, /RunInstances: InsufficientInstanceCapacity: We currently do not have sufficient/);
    assert.match(err!.message, /run 01-infra again to continue/);
    assert.is(fake.liveInstances().length, 3);

    const before = fake.calls.length;
    const result = await provider(fake).up(context(ws));
    assert.ok(result.ok);
    const creates = fake.calls.slice(before).filter((c) => /^(Create|Run|Import|Allocate)/.test(c.action)).map((c) => c.action);
    assert.equal(creates, ['RunInstances', 'RunInstances', 'RunInstances', 'AllocateAddress']);
    assert.is(fake.liveInstances().length, 6);
    assert.equal(fake.liveInstances().map((i) => hostOf(i.tags)).sort(), Object.keys(HOSTS).sort());
    assert.is(fake.vpcs.size, 1);
    assert.is(fake.keys.size, 1);
  } finally {
    await done();
  }
});

test('a resumed run whose instances EC2 does not list yet gets them back by client token', async () => {
  const { fake, ws, done } = await setup();
  try {
    fake.fault({ action: 'RunInstances', skip: 3, code: 'InsufficientInstanceCapacity', message: 'no capacity' });
    await provider(fake).up(context(ws)).then(() => assert.unreachable('the first run fails'), () => {});
    const launched = fake.liveInstances().map((i) => i.id);
    assert.is(launched.length, 3);
    fake.opts.invisible = new Set(launched); // a filtered DescribeInstances does not show them yet
    const before = fake.calls.length;
    assert.ok((await provider(fake).up(context(ws))).ok);
    assert.is(fake.calls.slice(before).filter((c) => c.action === 'RunInstances').length, 6, 'all six asked for');
    assert.is(fake.liveInstances().length, 6, 'the three already made came back, not three more');
    assert.equal(new Set(fake.liveInstances().map((i) => i.privateIp)).size, 6);
  } finally {
    await done();
  }
});

test('a lost RunInstances answer is retried with the same client token: no second instance', async () => {
  const { fake, ws, done } = await setup();
  try {
    fake.fault({ action: 'RunInstances', skip: 1, code: 'InternalError', message: 'An internal error has occurred', afterEffect: true });
    const result = await provider(fake).up(context(ws));
    assert.ok(result.ok);
    const runs = fake.calls.filter((c) => c.action === 'RunInstances');
    assert.is(runs.length, 7, 'one call was answered 500 after the instance was made, then retried');
    assert.is(runs[1]!.params.ClientToken, runs[2]!.params.ClientToken);
    assert.is(fake.liveInstances().length, 6);
  } finally {
    await done();
  }
});

test('a lost CreateVpc answer is not retried blindly (no token); the re-run finds the VPC by its tags', async () => {
  const { fake, ws, done } = await setup();
  try {
    fake.fault({ action: 'CreateVpc', code: 'InternalError', message: 'An internal error has occurred', afterEffect: true });
    await provider(fake).up(context(ws)).then(
      () => assert.unreachable('the first run fails'),
      (e: Error) => assert.match(e.message, /CreateVpc: InternalError/),
    );
    assert.is(fake.calls.filter((c) => c.action === 'CreateVpc').length, 1);
    assert.ok((await provider(fake).up(context(ws))).ok);
    assert.is(fake.vpcs.size, 1);
    assert.is(fake.calls.filter((c) => c.action === 'CreateVpc').length, 1);
  } finally {
    await done();
  }
});

test('throttling (RequestLimitExceeded) is retried with backoff and logged', async () => {
  const { fake, ws, done } = await setup();
  try {
    fake.fault({ action: 'CreateVpc', code: 'RequestLimitExceeded', message: 'Request limit exceeded.', times: 2 });
    fake.fault({ action: 'DescribeInstances', code: 'RequestLimitExceeded', message: 'Request limit exceeded.', times: 3 });
    const ctx = context(ws);
    const result = await provider(fake).up(ctx);
    assert.ok(result.ok);
    const vpcCalls = fake.calls.filter((c) => c.action === 'CreateVpc');
    assert.equal(vpcCalls.map((c) => c.status), [503, 503, 200]);
    assert.is(fake.vpcs.size, 1);
    assert.ok(ctx.log.lines.some((l) => /^warning: aws: RequestLimitExceeded; retrying in \d+ms \(attempt 2 of 10\)$/.test(l)), ctx.log.lines.join('\n'));
  } finally {
    await done();
  }
});

test('throttling that never ends gives up after the bound with a clear error', async () => {
  const { fake, ws, done } = await setup();
  try {
    fake.fault({ action: 'DescribeKeyPairs', code: 'RequestLimitExceeded', message: 'Request limit exceeded.', times: 100 });
    await provider(fake).up(context(ws)).then(
      () => assert.unreachable('should fail'),
      (e: Error) => assert.match(e.message, /^DescribeKeyPairs: RequestLimitExceeded: Request limit exceeded\./),
    );
    assert.is(fake.calls.filter((c) => c.action === 'DescribeKeyPairs').length, 10);
  } finally {
    await done();
  }
});

test('destroy removes exactly what is tagged, in dependency order, waiting out lingering interfaces', async () => {
  const { fake, ws, done } = await setup({ terminatePolls: 2, eniLingerChecks: 2 });
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    // Something of someone else's in the same region must survive.
    fake.vpcs.set('vpc-someoneelse', { id: 'vpc-someoneelse', cidr: '172.31.0.0/16', tags: new Map([['Name', 'default']]), dnsSupport: true, dnsHostnames: true });
    const start = fake.calls.length;
    const ctx = context(ws, { flags: { destroy: true } });
    const result = await provider(fake).destroy(ctx);
    assert.ok(result.ok, ctx.log.lines.join('\n'));
    assert.equal(fake.tagged(CLUSTER), []);
    assert.equal([...fake.vpcs.keys()], ['vpc-someoneelse']);
    assert.is(fake.liveInstances().length, 0);
    assert.is(fake.rtbs.size, 0, "the VPC's main route table went with it");

    const calls = fake.calls.slice(start);
    const ok = (action: string) => calls.map((c, i) => ({ c, i })).filter((x) => x.c.action === action && x.c.status === 200).map((x) => x.i);
    const lastTerminated = calls.reduce((at, c, i) => (c.action === 'DescribeInstances' && i > Math.max(...ok('TerminateInstances')) ? i : at), -1);
    assert.ok(Math.max(...ok('ReleaseAddress')) < Math.min(...ok('DetachInternetGateway')), 'the Elastic IP goes before the gateway');
    assert.ok(Math.max(...ok('TerminateInstances')) < lastTerminated, 'it waited for termination');
    assert.ok(lastTerminated < Math.min(...calls.map((c, i) => (c.action === 'DeleteSecurityGroup' ? i : Infinity))), 'nothing was deleted before the instances were gone');
    const sgAttempts = calls.filter((c) => c.action === 'DeleteSecurityGroup');
    assert.equal(sgAttempts.map((c) => c.code ?? 'ok'), ['DependencyViolation', 'DependencyViolation', 'ok'], 'retried while the interfaces lingered');
    assert.ok(ctx.log.lines.some((l) => /security-group: sg-\S+ is still in use \(DependencyViolation\); retrying/.test(l)));
    const order = ['ReleaseAddress', 'TerminateInstances', 'DeleteSecurityGroup', 'DeleteRouteTable', 'DeleteSubnet', 'DeleteInternetGateway', 'DeleteVpc', 'DeleteKeyPair'].map((a) => Math.max(...ok(a)));
    assert.equal([...order].sort((a, b) => a - b), order, 'reverse of the creation order');

    // The records describe machines that no longer exist: gone. The local key stays.
    for (const f of ['infra/hosts.json', 'infra/ssh.json', 'ssh/known_hosts', 'infra/aws.json']) assert.not.ok(existsSync(join(ws.dir, f)), f);
    assert.ok(existsSync(join(ws.dir, 'ssh', 'id_ed25519')));

    // Safe to run again.
    const again = fake.calls.length;
    const ctx2 = context(ws, { flags: { destroy: true } });
    assert.ok((await provider(fake).destroy(ctx2)).ok);
    assert.equal(fake.calls.slice(again).filter((c) => !/^Describe/.test(c.action)), []);
    assert.ok(ctx2.log.lines.includes('aws: nothing tagged hardway:cluster=hardway exists in us-west-2'));
  } finally {
    await done();
  }
});

test('a duplicate made outside the plan is reported by up and removed by destroy', async () => {
  const { fake, ws, done } = await setup();
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    const tags = new Map([['hardway:cluster', CLUSTER], ['hardway:role', 'vpc']]);
    fake.vpcs.set('vpc-0dup', { id: 'vpc-0dup', cidr: '10.240.0.0/24', tags, dnsSupport: true, dnsHostnames: true });
    const ctx = context(ws);
    assert.ok((await provider(fake).up(ctx)).ok);
    assert.ok(ctx.log.lines.some((l) => /^warning: vpc: 2 carry this cluster's tags \(vpc-\S+, vpc-0dup\); using vpc-\S+\. --destroy removes them all$/.test(l)), ctx.log.lines.join('\n'));
    assert.is(fake.vpcs.size, 2, 'up made no third one');
    assert.ok((await provider(fake).destroy(context(ws, { flags: { destroy: true } }))).ok);
    assert.is(fake.vpcs.size, 0);
  } finally {
    await done();
  }
});

test('deleting too early is a DependencyViolation (the fake enforces the order destroy relies on)', async () => {
  const { fake, ws, done } = await setup();
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    const client = new EC2Client({ region: 'us-west-2', endpoint: fake.url, credentials: { accessKeyId: 'A', secretAccessKey: 'B' }, maxAttempts: 1 });
    const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { name: string }) => e.name);
    assert.is(await code(client.send(new DeleteVpcCommand({ VpcId: [...fake.vpcs.keys()][0] }))), 'DependencyViolation');
    assert.is(await code(client.send(new DeleteSecurityGroupCommand({ GroupId: [...fake.sgs.values()].find((g) => !g.isDefault)!.id }))), 'DependencyViolation');
    const igw = [...fake.igws.values()][0]!;
    assert.is(await code(client.send(new DetachInternetGatewayCommand({ InternetGatewayId: igw.id, VpcId: igw.vpcId }))), 'DependencyViolation');
    client.destroy();
  } finally {
    await done();
  }
});

test('a dependency that never goes away stops destroy with a sentence, after the bound', async () => {
  const { fake, ws, done } = await setup({ eniLingerChecks: 1_000 });
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    await provider(fake, { dependencyTimeoutMs: 30 })
      .destroy(context(ws, { flags: { destroy: true } }))
      .then(
        () => assert.unreachable('should fail'),
        (e: Error) => assert.match(e.message, /^security-group: sg-\S+ is still in use after 30ms \(DeleteSecurityGroup: DependencyViolation: .*\); something hardway did not create may depend on it/),
      );
  } finally {
    await done();
  }
});

test('--check proves every call with DryRun and creates nothing', async () => {
  const { fake, ws, done } = await setup();
  try {
    const ctx = context(ws, { flags: { check: true } });
    const result = await provider(fake).check(ctx);
    assert.ok(result.ok, ctx.log.lines.join('\n'));
    const checks = result.checks as { action: string; status: string }[];
    const dry = fake.calls.filter((c) => c.params.DryRun === 'true');
    assert.ok(dry.length >= 25);
    assert.ok(dry.every((c) => c.code === 'DryRunOperation' && c.status === 412));
    for (const a of ['CreateVpc', 'CreateSubnet', 'RunInstances', 'ImportKeyPair', 'AllocateAddress', 'AuthorizeSecurityGroupIngress', 'TerminateInstances', 'DeleteVpc', 'ReleaseAddress', 'GetConsoleOutput']) {
      assert.ok(checks.some((c) => c.action === a && c.status === 'allowed'), a);
    }
    assert.equal(checks.filter((c) => c.status !== 'allowed').map((c) => c.action), ['ModifyVpcAttribute'], 'EC2 has no DryRun for it');
    assert.equal(fake.mutations(), []);
    assert.not.ok(existsSync(ws.dir), 'nothing written, not even the key');
  } finally {
    await done();
  }
});

test('--check names every denied permission and fails', async () => {
  const { fake, ws, done } = await setup({ denied: ['RunInstances', 'DeleteVpc', 'DescribeAddresses'] });
  try {
    const ctx = context(ws, { flags: { check: true } });
    const result = await provider(fake).check(ctx);
    assert.not.ok(result.ok);
    const checks = result.checks as { action: string; status: string }[];
    assert.equal(checks.filter((c) => c.status === 'denied').map((c) => c.action).sort(), ['DeleteVpc', 'DescribeAddresses', 'RunInstances']);
    assert.ok(ctx.log.lines.some((l) => /^error: check: RunInstances: denied \(RunInstances: UnauthorizedOperation: You are not authorized/.test(l)), ctx.log.lines.join('\n'));
    assert.ok(ctx.log.lines.some((l) => /^check: \d+ of \d+ calls allowed; denied: .*RunInstances/.test(l)));
    assert.equal(fake.mutations(), []);
  } finally {
    await done();
  }
});

test('--dry-run prints what exists and what would be made, and changes nothing', async () => {
  const { fake, ws, done } = await setup();
  try {
    const ctx = context(ws, { dryRun: true });
    const result = await provider(fake).up(ctx);
    assert.ok(result.ok);
    assert.equal(fake.mutations(), []);
    assert.not.ok(existsSync(ws.dir), 'no key, no records');
    const changes = result.changes as string[];
    assert.ok(changes.includes('vpc: create 10.240.0.0/24'));
    assert.ok(changes.includes(`lb-0: launch t3.small at 10.240.0.5 from ${IMAGE_NOBLE_NEW}`));
    assert.ok(changes.includes('elastic-ip: allocate an address for lb-0'));
    assert.ok(ctx.log.lines.some((l) => l.startsWith('ssh-key: would generate ')));

    // After a real run, the plan is empty and says what exists; a destroy plan lists everything.
    assert.ok((await provider(fake).up(context(ws))).ok);
    const mutationsAfterUp = fake.mutations().length;
    const again = context(ws, { dryRun: true });
    assert.equal((await provider(fake).up(again)).changes, []);
    assert.ok(again.log.lines.some((l) => /^controller-1: already exists \(i-\S+, running, 10\.240\.0\.11\)$/.test(l)));
    const gone = context(ws, { dryRun: true, flags: { destroy: true } });
    const plan = (await provider(fake).destroy(gone)).changes as string[];
    assert.ok(plan.some((c) => /^vpc: delete vpc-/.test(c)));
    assert.is(plan.filter((c) => / terminate i-/.test(c)).length, 6);
    assert.is(fake.mutations().length, mutationsAfterUp);
    assert.is(fake.liveInstances().length, 6);
  } finally {
    await done();
  }
});

test('a tampered console (key and fingerprint disagree) is refused: no known_hosts entry, run fails', async () => {
  const { fake, ws, done } = await setup({ tamperFingerprint: true });
  try {
    const ctx = context(ws);
    const result = await provider(fake).up(ctx);
    assert.not.ok(result.ok);
    assert.equal((result.missingHostKeys as string[]).length, 6);
    assert.is(readFileSync(join(ws.dir, 'ssh', 'known_hosts'), 'utf8'), '');
    assert.ok(ctx.log.lines.some((l) => /^error: worker-0: i-\S+: the console's ED25519 host key .* does not match the fingerprint printed with it/.test(l)));
    assert.ok(existsSync(join(ws.dir, 'infra', 'hosts.json')), 'the addresses are still recorded');
  } finally {
    await done();
  }
});

test('keys that never appear: polling stops at the bound with a clear message', async () => {
  const { fake, ws, done } = await setup({ noConsoleKeys: true });
  try {
    const ctx = context(ws);
    const t0 = Date.now();
    const result = await provider(fake, { consoleTimeoutMs: 60, consolePollMs: 5 }).up(ctx);
    assert.ok(Date.now() - t0 < 5_000);
    assert.not.ok(result.ok);
    assert.ok(ctx.log.lines.some((l) => /^error: lb-0: no SSH host keys on the console of i-\S+ after 60ms, so the first SSH connection could not be verified; .*aws ec2 get-console-output --region us-west-2 --instance-id i-\S+ --latest --output text/.test(l)), ctx.log.lines.join('\n'));
    const calls = fake.calls.filter((c) => c.action === 'GetConsoleOutput').length;
    assert.ok(calls >= 12 && calls < 200, `bounded polling (${calls} calls)`);
    // Once the keys show up, a re-run fills known_hosts without touching anything else.
    fake.opts.noConsoleKeys = false;
    const again = await provider(fake).up(context(ws));
    assert.ok(again.ok);
    assert.is(readFileSync(join(ws.dir, 'ssh', 'known_hosts'), 'utf8').trim().split('\n').length, 24);
  } finally {
    await done();
  }
});

test('consoles wrapped at 80 columns and instance types without Latest still give the keys', async () => {
  const { fake, ws, done } = await setup({ consoleWrap: 80, latestUnsupported: true, consolePolls: 3 });
  try {
    const result = await provider(fake).up(context(ws));
    assert.ok(result.ok);
    const gets = fake.calls.filter((c) => c.action === 'GetConsoleOutput');
    assert.ok(gets.some((c) => c.params.Latest === 'true' && c.code === 'UnsupportedOperation'));
    assert.ok(gets.some((c) => c.params.Latest === undefined && c.status === 200));
    const known = readFileSync(join(ws.dir, 'ssh', 'known_hosts'), 'utf8');
    for (const i of fake.liveInstances()) for (const k of i.hostKeys) assert.ok(known.includes(`${i.publicIp} ${k.type} ${k.blob.toString('base64')}`));
  } finally {
    await done();
  }
});

test('a stopped instance is started again; its new public IP is recorded, its keys kept', async () => {
  const { fake, ws, done } = await setup();
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    const w = fake.liveInstances().find((i) => hostOf(i.tags) === 'worker-1')!;
    const oldIp = w.publicIp;
    fake.stop(w.id);
    const before = fake.calls.length;
    const result = await provider(fake).up(context(ws));
    assert.ok(result.ok);
    assert.ok(fake.calls.slice(before).some((c) => c.action === 'StartInstances'));
    assert.not.ok(fake.calls.slice(before).some((c) => c.action === 'GetConsoleOutput'), 'same instance, same keys');
    assert.is(w.state, 'running');
    assert.is.not(w.publicIp, oldIp);
    assert.is(readJson(join(ws.dir, 'infra', 'hosts.json')).hosts['worker-1'].publicIp, w.publicIp);
    assert.ok(readFileSync(join(ws.dir, 'ssh', 'known_hosts'), 'utf8').includes(`${w.publicIp} ssh-ed25519 `));
  } finally {
    await done();
  }
});

test('a changed operator CIDR replaces the old rules; rules hardway does not manage are left alone', async () => {
  const { fake, ws, done } = await setup();
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    const sg = [...fake.sgs.values()].find((g) => !g.isDefault)!;
    sg.rules.push({ proto: 'tcp', from: 30080, to: 30080, cidr: '0.0.0.0/0' });
    const inv = JSON.parse(readFileSync(ws.inventory, 'utf8'));
    inv.aws.operatorCidr = '198.51.100.7/32';
    (await import('node:fs')).writeFileSync(ws.inventory, JSON.stringify(inv));
    const ctx = context(ws);
    assert.ok((await provider(fake).up(ctx)).ok);
    const rules = sg.rules.map((r) => `${r.proto} ${r.from ?? ''} ${r.cidr}`);
    assert.ok(rules.includes('tcp 22 198.51.100.7/32'));
    assert.not.ok(rules.includes('tcp 22 203.0.113.0/24'), 'the old operator rule is revoked');
    assert.ok(rules.includes('tcp 30080 0.0.0.0/0'), 'a NodePort rule added by hand stays');
    assert.ok(ctx.log.lines.includes('security-group: left alone: tcp 30080 from 0.0.0.0/0 (not a rule hardway manages)'));
  } finally {
    await done();
  }
});

test('a key pair in AWS that is not the local key stops the run before anything else', async () => {
  const { fake, ws, done } = await setup();
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    unlinkSync(join(ws.dir, 'ssh', 'id_ed25519'));
    unlinkSync(join(ws.dir, 'ssh', 'id_ed25519.pub'));
    const before = fake.calls.length;
    await provider(fake).up(context(ws)).then(
      () => assert.unreachable('should fail'),
      (e: Error) => assert.match(e.message, /key-pair: hardway-ssh in AWS \(fingerprint \S+\) is not the key at .*id_ed25519 .*Restore the original key file, or run with --destroy/),
    );
    assert.equal(fake.calls.slice(before).map((c) => c.action), ['DescribeKeyPairs']);
  } finally {
    await done();
  }
});

test('an instance at another address than the inventory says is an error, not a silent second machine', async () => {
  const { fake, ws, done } = await setup();
  try {
    assert.ok((await provider(fake).up(context(ws))).ok);
    const inv = JSON.parse(readFileSync(ws.inventory, 'utf8'));
    inv.workers[0].privateIp = '10.240.0.30';
    (await import('node:fs')).writeFileSync(ws.inventory, JSON.stringify(inv));
    rmSync(join(ws.dir, 'infra'), { recursive: true });
    await provider(fake).up(context(ws)).then(
      () => assert.unreachable('should fail'),
      (e: Error) => assert.match(e.message, /^worker-0: i-\S+ has private IP 10\.240\.0\.20 but the inventory says 10\.240\.0\.30; fix the inventory or run with --destroy first/),
    );
    assert.is(fake.liveInstances().length, 6);
  } finally {
    await done();
  }
});

test.run();
