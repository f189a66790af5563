// The real script, end to end: `node scripts/01-infra.mjs` with provider "aws", talking to the
// loopback EC2 through $HARDWAY_EC2_ENDPOINT; and with no credentials at all.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeEc2 } from './fixtures/aws/fake-ec2.ts';
import { workspace, readJson, ROOT } from './fixtures/aws/helpers.ts';

const SCRIPT = join(ROOT, 'scripts', '01-infra.mjs');

/** The environment minus anything that could reach real AWS credentials or metadata. */
function isolatedEnv(root: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_') && k !== 'HARDWAY_EC2_ENDPOINT') env[k] = v;
  const empty = join(root, 'empty-aws-file');
  writeFileSync(empty, '');
  return { ...env, AWS_CONFIG_FILE: empty, AWS_SHARED_CREDENTIALS_FILE: empty, AWS_EC2_METADATA_DISABLED: 'true', HOME: root, ...extra };
}

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, ...args], { env, cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('no credentials: one clear sentence, exit 1, nothing written', async () => {
  const ws = workspace();
  try {
    const r = await run(['--inventory', ws.inventory, '--dir', ws.dir], isolatedEnv(ws.root));
    assert.is(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines, [
      '01-infra: failed: no AWS credentials found: set AWS_PROFILE to a configured profile (run "aws sso login" first for SSO), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
    ]);
    assert.not.ok(/\n\s+at /.test(r.stderr), 'no stack');
    assert.not.ok(existsSync(join(ws.dir, 'ssh', 'id_ed25519')), 'no key made before the credentials were found');
  } finally {
    ws.cleanup();
  }
});

test('a named profile that does not exist says which one', async () => {
  const ws = workspace();
  try {
    const r = await run(['--inventory', ws.inventory, '--dir', ws.dir, '--check'], isolatedEnv(ws.root, { AWS_PROFILE: 'hardway-nope' }));
    assert.is(r.code, 1);
    assert.match(r.stderr, /^01-infra: failed: no AWS credentials found for profile "hardway-nope": check ~\/\.aws\/config and ~\/\.aws\/credentials, or run "aws sso login --profile hardway-nope" for an SSO profile\n$/);
  } finally {
    ws.cleanup();
  }
});

test('scripts/01-infra.mjs builds, re-runs and destroys the cluster against the endpoint in $HARDWAY_EC2_ENDPOINT', async () => {
  const fake = await FakeEc2.start({ pendingPolls: 0, terminatePolls: 0, consolePolls: 0 });
  const ws = workspace();
  try {
    const env = isolatedEnv(ws.root, { HARDWAY_EC2_ENDPOINT: fake.url, AWS_ACCESS_KEY_ID: 'AKIDSCRIPTTEST', AWS_SECRET_ACCESS_KEY: 'secret' });

    const check = await run(['--inventory', ws.inventory, '--dir', ws.dir, '--check', '--json'], env);
    assert.is(check.code, 0, check.stderr);
    assert.ok(JSON.parse(check.stdout).ok);

    const up = await run(['--inventory', ws.inventory, '--dir', ws.dir, '--json'], env);
    assert.is(up.code, 0, up.stderr);
    const result = JSON.parse(up.stdout);
    assert.is(Object.keys(result.hosts).length, 6);
    assert.match(up.stderr, /warning: aws: sending EC2 calls to http:\/\/127\.0\.0\.1:\d+ \(\$HARDWAY_EC2_ENDPOINT\), not to AWS/);
    assert.match(up.stderr, /\nvpc: created vpc-\S+ \(10\.240\.0\.0\/24\)\n/);
    assert.not.match(up.stderr, /NodeVersionSupportWarning/);
    assert.ok(fake.calls.every((c) => c.accessKeyId === 'AKIDSCRIPTTEST'), 'credentials came from the standard chain (environment)');
    const hosts = readJson(join(ws.dir, 'infra', 'hosts.json'));
    assert.is(hosts.hosts['lb-0'].publicIp, [...fake.addresses.values()][0]!.publicIp);
    assert.ok(existsSync(join(ws.dir, 'ssh', 'known_hosts')));

    const again = await run(['--inventory', ws.inventory, '--dir', ws.dir, '--verbose'], env);
    assert.is(again.code, 0, again.stderr);
    assert.match(again.stderr, /\$ aws: aws ec2 describe-vpcs --region us-west-2 --cli-input-json '\{"Filters":/, '--verbose shows each call as an AWS CLI command');
    assert.is(fake.liveInstances().length, 6);

    const down = await run(['--inventory', ws.inventory, '--dir', ws.dir, '--destroy'], env);
    assert.is(down.code, 0, down.stderr);
    assert.equal(fake.tagged('hardway'), []);
    assert.not.ok(existsSync(join(ws.dir, 'infra', 'hosts.json')));
  } finally {
    await fake.close();
    ws.cleanup();
  }
});

test('$HARDWAY_EC2_ENDPOINT may only point at this machine', async () => {
  const ws = workspace();
  try {
    const env = isolatedEnv(ws.root, { HARDWAY_EC2_ENDPOINT: 'http://ec2.example.com', AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'B' });
    const r = await run(['--inventory', ws.inventory, '--dir', ws.dir], env);
    assert.is(r.code, 2);
    assert.match(r.stderr, /^01-infra: bad input: \$HARDWAY_EC2_ENDPOINT: is for tests and may only point at this machine \(127\.0\.0\.1, localhost or ::1\), not "ec2\.example\.com"; unset it to use AWS\n$/);
  } finally {
    ws.cleanup();
  }
});

test('without aws.region in the inventory, the region comes from the SDK chain; with none anywhere, one sentence', async () => {
  const fake = await FakeEc2.start({ pendingPolls: 0, terminatePolls: 0, consolePolls: 0 });
  const ws = workspace((inv) => delete inv.aws.region);
  try {
    const creds = { HARDWAY_EC2_ENDPOINT: fake.url, AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'B' };
    const fromEnv = await run(['--inventory', ws.inventory, '--dir', ws.dir, '--dry-run', '--verbose'], isolatedEnv(ws.root, { ...creds, AWS_REGION: 'eu-central-1' }));
    assert.is(fromEnv.code, 0, fromEnv.stderr);
    assert.match(fromEnv.stderr, /aws ec2 describe-vpcs --region eu-central-1 /);
    const profileFile = join(ws.root, 'aws-config');
    writeFileSync(profileFile, '[profile lab]\nregion = ap-south-1\naws_access_key_id = A\naws_secret_access_key = B\n');
    const fromProfile = await run(['--inventory', ws.inventory, '--dir', ws.dir, '--dry-run', '--verbose'], isolatedEnv(ws.root, { ...creds, AWS_PROFILE: 'lab', AWS_CONFIG_FILE: profileFile }));
    assert.is(fromProfile.code, 0, fromProfile.stderr);
    assert.match(fromProfile.stderr, /aws ec2 describe-vpcs --region ap-south-1 /);
    const calls = fake.calls.length;
    const none = await run(['--inventory', ws.inventory, '--dir', ws.dir], isolatedEnv(ws.root, creds));
    assert.is(none.code, 2, none.stderr);
    assert.match(none.stderr, /^01-infra: bad input: .*inventory\.json: aws\.region: no AWS region: set aws\.region in the inventory, or AWS_REGION, or region in your AWS profile\n$/);
    assert.is(fake.calls.length, calls, 'no call without a region');
  } finally {
    await fake.close();
    ws.cleanup();
  }
});

test('an aws inventory without operatorCidr is bad input (exit 2) before any call', async () => {
  const fake = await FakeEc2.start();
  const ws = workspace((inv) => delete inv.aws.operatorCidr);
  try {
    const env = isolatedEnv(ws.root, { HARDWAY_EC2_ENDPOINT: fake.url, AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'B' });
    const r = await run(['--inventory', ws.inventory, '--dir', ws.dir], env);
    assert.is(r.code, 2);
    assert.match(r.stderr, /bad input: .*aws\.operatorCidr: is required for the aws provider/);
    assert.equal(fake.calls, []);
  } finally {
    await fake.close();
    ws.cleanup();
  }
});

test.run();
