// Pure planning for the aws provider: desired state from the inventory, AMI choice, rule keys, tokens.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseInventory } from '../lib/inventory.ts';
import { InputError } from '../lib/errors.ts';
import { desiredState, clientToken, ruleKey, describeRule, tagsFor, clusterFilters, reservedByAws } from '../lib/aws/desired.ts';
import { pickUbuntuLts, ltsRelease, ubuntuNameFilter, CANONICAL_OWNER } from '../lib/aws/ami.ts';
import { existingRules } from '../lib/aws/resources.ts';
import { parseCidr, type Cidr } from '../lib/cidr.ts';
import { ROOT } from './fixtures/aws/helpers.ts';

function inventory(edit: (inv: Record<string, any>) => void = () => {}) {
  const inv = JSON.parse(readFileSync(join(ROOT, 'inventory.json'), 'utf8')) as Record<string, any>;
  inv.provider = 'aws';
  edit(inv);
  return parseInventory(inv, 'inventory.json');
}

test('security group rules: VPC and pod CIDRs in full, 22/6443/ICMP only from the operator', () => {
  const d = desiredState(inventory());
  assert.equal(
    d.ingress.map(describeRule),
    ['all traffic from 10.240.0.0/24', 'all traffic from 10.200.0.0/16', 'tcp 22 from 203.0.113.0/24', 'tcp 6443 from 203.0.113.0/24', 'ICMP from 203.0.113.0/24'],
  );
});

test('0.0.0.0/0 only when the inventory says so', () => {
  const open = desiredState(inventory((i) => (i.aws.operatorCidr = '0.0.0.0/0')));
  assert.ok(open.ingress.some((r) => r.cidr === '0.0.0.0/0' && r.fromPort === 22));
  assert.not.ok(desiredState(inventory()).ingress.some((r) => r.cidr === '0.0.0.0/0'));
});

test('six instances at the inventory addresses, the load balancer gets the Elastic IP', () => {
  const d = desiredState(inventory());
  assert.equal(
    d.instances.map((h) => `${h.name}@${h.privateIp}:${h.role}`),
    ['lb-0@10.240.0.5:loadbalancer', 'controller-0@10.240.0.10:controller', 'controller-1@10.240.0.11:controller', 'controller-2@10.240.0.12:controller', 'worker-0@10.240.0.20:worker', 'worker-1@10.240.0.21:worker'],
  );
  assert.is(d.loadBalancer, 'lb-0');
  assert.is(d.subnetCidr, '10.240.0.0/24');
  assert.is(d.keyName, 'hardway-ssh');
  assert.is(d.sshUser, 'ubuntu');
});

test('an address AWS reserves is an input error naming the field', () => {
  const cidr = parseCidr('10.240.0.0/24') as Cidr;
  assert.ok(reservedByAws(cidr, '10.240.0.1'));
  assert.ok(reservedByAws(cidr, '10.240.0.3'));
  assert.ok(reservedByAws(cidr, '10.240.0.255'));
  assert.is(reservedByAws(cidr, '10.240.0.4'), undefined);
  try {
    desiredState(inventory((i) => (i.controllers[1].privateIp = '10.240.0.2')));
    assert.unreachable('should refuse');
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, /controllers\[1\]\.privateIp: "10\.240\.0\.2" is reserved by AWS/);
  }
});

test('a VPC range AWS does not allow is an input error', () => {
  assert.throws(() => desiredState(inventory((i) => (i.aws.vpcCidr = '10.240.0.0/12'))), /AWS allows prefixes from \/16 to \/28/);
});

test('tags and filters: cluster and role on everything, host on instances', () => {
  assert.equal(tagsFor('hw', 'vpc'), [
    { Key: 'Name', Value: 'hw-vpc' },
    { Key: 'hardway:cluster', Value: 'hw' },
    { Key: 'hardway:role', Value: 'vpc' },
  ]);
  assert.equal(tagsFor('hw', 'worker', 'worker-0').at(-1), { Key: 'hardway:host', Value: 'worker-0' });
  assert.equal(clusterFilters('hw', 'subnet'), [
    { Name: 'tag:hardway:cluster', Values: ['hw'] },
    { Name: 'tag:hardway:role', Values: ['subnet'] },
  ]);
});

test('client tokens: stable per subnet and host, different after a destroy, at most 64 chars', () => {
  const h = { name: 'worker-0', role: 'worker' as const, privateIp: '10.240.0.20', instanceType: 't3.small' };
  const a = clientToken('subnet-1', h);
  assert.is(a, clientToken('subnet-1', h));
  assert.is.not(a, clientToken('subnet-2', h));
  assert.is.not(a, clientToken('subnet-1', { ...h, name: 'worker-1' }));
  assert.is.not(a, clientToken('subnet-1', h, 1));
  assert.ok(clientToken('subnet-1', h, 4).length <= 64);
});

test('rule keys ignore ports for all-traffic rules; existing permissions flatten per CIDR', () => {
  assert.is(ruleKey({ protocol: '-1', fromPort: -1, toPort: -1, cidr: '10.0.0.0/8' }), ruleKey({ protocol: '-1', cidr: '10.0.0.0/8' }));
  const rules = existingRules([
    { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '1.2.3.0/24' }, { CidrIp: '5.6.7.0/24' }] },
    { IpProtocol: '-1', IpRanges: [{ CidrIp: '10.240.0.0/24' }] },
    { IpProtocol: 'udp', FromPort: 53, ToPort: 53, IpRanges: [{ CidrIp: '10.0.0.0/8' }] },
  ]);
  assert.equal(rules.map((r) => `${describeRule(r.rule)}:${r.managedShape}`), ['tcp 22 from 1.2.3.0/24:true', 'tcp 22 from 5.6.7.0/24:true', 'all traffic from 10.240.0.0/24:true', 'udp 53 from 10.0.0.0/8:false']);
});

const img = (name: string, id: string, owner = CANONICAL_OWNER, arch = 'x86_64', created = '2025-01-01T00:00:00.000Z') => ({ Name: name, ImageId: id, OwnerId: owner, Architecture: arch as 'x86_64', State: 'available' as const, CreationDate: created });

test('AMI: newest LTS, newest build; never interim releases or other owners', () => {
  const images = [
    img('ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20250301', 'ami-jammy'),
    img('ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240423', 'ami-noble-old'),
    img('ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250115', 'ami-noble-new'),
    img('ubuntu/images/hvm-ssd-gp3/ubuntu-oracular-24.10-amd64-server-20250201', 'ami-interim'),
    img('ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20991231', 'ami-imposter', '999988887777'),
    img('ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-server-20250116', 'ami-arm', CANONICAL_OWNER, 'arm64'),
  ];
  assert.is(pickUbuntuLts(images, 'x86_64')?.ImageId, 'ami-noble-new');
  assert.is(pickUbuntuLts(images, 'arm64')?.ImageId, 'ami-arm');
  assert.is(pickUbuntuLts(images.slice(3, 5), 'x86_64'), undefined);
  assert.is(ltsRelease('ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20240101')?.version, '20.04');
  assert.is(ltsRelease('ubuntu/images/hvm-ssd/ubuntu-mantic-23.04-amd64-server-20240101'), undefined);
  assert.is(ubuntuNameFilter('arm64'), 'ubuntu/images/hvm-ssd*/ubuntu-*-arm64-server-*');
});

test.run();
