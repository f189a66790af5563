/**
 * Who may get in: the key pair (the public half of the local ed25519 key) and the security group
 * (everything between the hosts and from pods; SSH, 6443 and ICMP from the operator only).
 */
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateSecurityGroupCommand,
  DeleteKeyPairCommand,
  DeleteSecurityGroupCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  ImportKeyPairCommand,
  RevokeSecurityGroupIngressCommand,
  type IpPermission,
} from '@aws-sdk/client-ec2';
import type { Step, Row } from '../table.ts';
import { PLACEHOLDER, first, tagSpec, warnDuplicates, consistent, removeWithRetry } from '../table.ts';
import { isAwsCode } from '../ec2.ts';
import { clusterFilters, describeRule, ruleKey, type IngressRule } from '../desired.ts';
import { generateEd25519, publicKeyLine, sameFingerprint } from '../../infra/sshkey.ts';

// ---------------------------------------------------------------------------------------------
// key pair

/** The key pair: imported from the local key, never replaced by a different one. */
export const keyPairRow: Row = {
  role: 'key-pair',
  async find(s) {
    const out = await s.ec2.send(new DescribeKeyPairsCommand({ Filters: clusterFilters(s.desired.cluster, 'key-pair') }));
    s.found.keyPairs = out.KeyPairs ?? [];
  },
  changes(s) {
    const kp = first(s.found.keyPairs);
    const local = s.key;
    if (!kp) {
      const what = local ? `${local.publicKey.fingerprint}` : `a new ed25519 key generated at ${s.keyPath}`;
      return [
        {
          subject: 'key-pair',
          plan: `import ${s.desired.keyName} from ${what}`,
          run: async () => {
            const key = s.key!;
            try {
              const out = await s.ec2.sendOnce(
                new ImportKeyPairCommand({ KeyName: s.desired.keyName, PublicKeyMaterial: Buffer.from(key.publicKeyLine), TagSpecifications: tagSpec(s, 'key-pair', 'key-pair') }),
              );
              s.found.keyPairs = [{ KeyName: out.KeyName, KeyPairId: out.KeyPairId, KeyFingerprint: out.KeyFingerprint }];
              return `imported ${out.KeyName} (${out.KeyPairId}, ${key.publicKey.fingerprint})`;
            } catch (e) {
              if (isAwsCode(e, 'InvalidKeyPair.Duplicate')) {
                throw new Error(
                  `key-pair: a key pair named ${s.desired.keyName} already exists in ${s.desired.region} without this cluster's tags; ` +
                    'delete it (aws ec2 delete-key-pair) or choose another cluster.name',
                );
              }
              throw e;
            }
          },
        },
      ];
    }
    if (local && !sameFingerprint(kp.KeyFingerprint, local.publicKey.fingerprint)) {
      throw new Error(
        `key-pair: ${kp.KeyName} in AWS (fingerprint ${kp.KeyFingerprint}) is not the key at ${local.privateKeyPath} (${local.publicKey.fingerprint}); ` +
          'the instances would not accept this key. Restore the original key file, or run with --destroy and start again',
      );
    }
    return [...warnDuplicates('key-pair', s.found.keyPairs.map((k) => k.KeyPairId)), { subject: 'key-pair', note: `already exists (${kp.KeyName}, ${kp.KeyPairId})` }];
  },
  probes(s) {
    // Without a local key yet, prove ImportKeyPair with a throwaway one (never written anywhere).
    const material = Buffer.from(s.key?.publicKeyLine ?? publicKeyLine(generateEd25519('hardway-check').publicKey));
    return [
      { action: 'ImportKeyPair', subject: 'key-pair', call: () => s.ec2.send(new ImportKeyPairCommand({ KeyName: s.desired.keyName, PublicKeyMaterial: material, TagSpecifications: tagSpec(s, 'key-pair', 'key-pair'), DryRun: true })) },
      { action: 'DeleteKeyPair', subject: 'key-pair', call: () => s.ec2.send(new DeleteKeyPairCommand({ KeyName: s.desired.keyName, DryRun: true })) },
    ];
  },
  removals(s) {
    return s.found.keyPairs.map((kp) => ({
      subject: 'key-pair',
      plan: `delete ${kp.KeyName} (${kp.KeyPairId})`,
      run: () => removeWithRetry(s, 'key-pair', kp.KeyPairId ?? kp.KeyName!, () => s.ec2.send(new DeleteKeyPairCommand({ KeyPairId: kp.KeyPairId }))),
    }));
  },
};

// ---------------------------------------------------------------------------------------------
// security group

/** The rules a security group has, flattened to one per CIDR, IPv4 ranges only. */
export function existingRules(perms: readonly IpPermission[] | undefined): { rule: Omit<IngressRule, 'description'>; managedShape: boolean }[] {
  const out: { rule: Omit<IngressRule, 'description'>; managedShape: boolean }[] = [];
  for (const p of perms ?? []) {
    const protocol = p.IpProtocol === '-1' || p.IpProtocol === 'tcp' || p.IpProtocol === 'icmp' ? p.IpProtocol : undefined;
    for (const r of p.IpRanges ?? []) {
      if (!r.CidrIp) continue;
      const rule = { protocol: (protocol ?? p.IpProtocol) as IngressRule['protocol'], ...(p.FromPort !== undefined ? { fromPort: p.FromPort } : {}), ...(p.ToPort !== undefined ? { toPort: p.ToPort } : {}), cidr: r.CidrIp };
      out.push({ rule, managedShape: protocol !== undefined });
    }
  }
  return out;
}

function permission(r: Omit<IngressRule, 'description'> & { description?: string }): IpPermission {
  return {
    IpProtocol: r.protocol,
    ...(r.protocol === '-1' ? {} : { FromPort: r.fromPort, ToPort: r.toPort }),
    IpRanges: [{ CidrIp: r.cidr, ...(r.description ? { Description: r.description } : {}) }],
  };
}

/** Which existing rules hardway owns: same protocol and ports as a desired rule. Others are left alone. */
function shapeKey(r: Pick<IngressRule, 'protocol' | 'fromPort' | 'toPort'>): string {
  return ruleKey({ ...r, cidr: '' });
}

/** The security group and its ingress rules (missing ones added, stale operator rules revoked). */
export const securityGroupRow: Row = {
  role: 'security-group',
  async find(s) {
    const out = await s.ec2.send(new DescribeSecurityGroupsCommand({ Filters: clusterFilters(s.desired.cluster, 'security-group') }));
    s.found.securityGroups = out.SecurityGroups ?? [];
  },
  changes(s) {
    const sg = first(s.found.securityGroups);
    const steps: Step[] = [];
    if (!sg) {
      steps.push({
        subject: 'security-group',
        plan: `create ${s.desired.securityGroupName}`,
        run: async () => {
          const vpc = first(s.found.vpcs)!.VpcId!;
          const out = await consistent(s, () =>
            s.ec2.sendOnce(
              new CreateSecurityGroupCommand({
                GroupName: s.desired.securityGroupName,
                Description: `hardway cluster ${s.desired.cluster}: all traffic inside, SSH/6443/ICMP from the operator`,
                VpcId: vpc,
                TagSpecifications: tagSpec(s, 'security-group', 'security-group'),
              }),
            ),
          );
          s.found.securityGroups = [{ GroupId: out.GroupId, GroupName: s.desired.securityGroupName, VpcId: vpc, IpPermissions: [] }];
          return `created ${out.GroupId} (${s.desired.securityGroupName})`;
        },
      });
    } else {
      steps.push(...warnDuplicates('security-group', s.found.securityGroups.map((g) => g.GroupId)), { subject: 'security-group', note: `already exists (${sg.GroupId}, ${sg.GroupName})` });
    }
    const have = existingRules(sg?.IpPermissions);
    const haveKeys = new Set(have.map((h) => ruleKey(h.rule)));
    const wantKeys = new Set(s.desired.ingress.map(ruleKey));
    const missing = s.desired.ingress.filter((r) => !haveKeys.has(ruleKey(r)));
    const managedShapes = new Set(s.desired.ingress.map(shapeKey));
    const stale = have.filter((h) => h.managedShape && managedShapes.has(shapeKey(h.rule)) && !wantKeys.has(ruleKey(h.rule)));
    const foreign = have.filter((h) => !(h.managedShape && managedShapes.has(shapeKey(h.rule))));
    if (s.desired.ingress.some((r) => r.cidr === '0.0.0.0/0' && r.protocol !== '-1')) {
      steps.push({ subject: 'security-group', warn: true, note: 'aws.operatorCidr is 0.0.0.0/0: SSH, the API server and ping are open to the whole internet' });
    }
    if (missing.length > 0) {
      steps.push({
        subject: 'security-group',
        plan: `allow ${missing.map(describeRule).join('; ')}`,
        run: async () => {
          const id = first(s.found.securityGroups)!.GroupId!;
          await consistent(s, () => s.ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: id, IpPermissions: missing.map(permission) })));
          return `allowed ${missing.map(describeRule).join('; ')}`;
        },
      });
    } else if (sg) {
      steps.push({ subject: 'security-group', note: `rules in place (${s.desired.ingress.map(describeRule).join('; ')})` });
    }
    if (stale.length > 0) {
      steps.push({
        subject: 'security-group',
        plan: `revoke ${stale.map((h) => describeRule(h.rule)).join('; ')} (no longer in the inventory)`,
        run: async () => {
          await s.ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId: sg!.GroupId, IpPermissions: stale.map((h) => permission(h.rule)) }));
          return `revoked ${stale.map((h) => describeRule(h.rule)).join('; ')} (no longer in the inventory)`;
        },
      });
    }
    for (const f of foreign) steps.push({ subject: 'security-group', note: `left alone: ${describeRule(f.rule)} (not a rule hardway manages)` });
    return steps;
  },
  probes(s) {
    const vpc = first(s.found.vpcs)?.VpcId ?? PLACEHOLDER.vpc;
    const id = first(s.found.securityGroups)?.GroupId ?? PLACEHOLDER.sg;
    const rule = permission(s.desired.ingress[0]!);
    return [
      {
        action: 'CreateSecurityGroup',
        subject: 'security-group',
        call: () => s.ec2.send(new CreateSecurityGroupCommand({ GroupName: s.desired.securityGroupName, Description: 'hardway check', VpcId: vpc, TagSpecifications: tagSpec(s, 'security-group', 'security-group'), DryRun: true })),
      },
      { action: 'AuthorizeSecurityGroupIngress', subject: 'security-group', call: () => s.ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: id, IpPermissions: [rule], DryRun: true })) },
      { action: 'RevokeSecurityGroupIngress', subject: 'security-group', call: () => s.ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId: id, IpPermissions: [rule], DryRun: true })) },
      { action: 'DeleteSecurityGroup', subject: 'security-group', call: () => s.ec2.send(new DeleteSecurityGroupCommand({ GroupId: id, DryRun: true })) },
    ];
  },
  removals(s) {
    return s.found.securityGroups.map((g) => ({
      subject: 'security-group',
      plan: `delete ${g.GroupId} (${g.GroupName})`,
      run: () => removeWithRetry(s, 'security-group', g.GroupId!, () => s.ec2.send(new DeleteSecurityGroupCommand({ GroupId: g.GroupId }))),
    }));
  },
};
