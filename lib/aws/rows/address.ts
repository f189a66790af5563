/** The Elastic IP on the load balancer: the API server's public address, stable for the certificates. */
import {
  AllocateAddressCommand,
  AssociateAddressCommand,
  DescribeAddressesCommand,
  DisassociateAddressCommand,
  ReleaseAddressCommand,
} from '@aws-sdk/client-ec2';
import type { Step, Row } from '../table.ts';
import { PLACEHOLDER, first, tagSpec, warnDuplicates, consistent, removeWithRetry } from '../table.ts';
import { isAwsCode } from '../ec2.ts';
import { instanceFor } from './instances.ts';
import { clusterFilters } from '../desired.ts';

// ---------------------------------------------------------------------------------------------
// Elastic IP for the load balancer: the API server's public address, stable for the certificates

/** The Elastic IP: allocated once, associated with the load balancer. */
export const elasticIpRow: Row = {
  role: 'elastic-ip',
  async find(s) {
    const out = await s.ec2.send(new DescribeAddressesCommand({ Filters: clusterFilters(s.desired.cluster, 'elastic-ip') }));
    s.found.addresses = out.Addresses ?? [];
  },
  changes(s) {
    const lb = s.desired.loadBalancer;
    const addr = first(s.found.addresses);
    const steps: Step[] = [];
    if (!addr) {
      steps.push({
        subject: 'elastic-ip',
        plan: `allocate an address for ${lb}`,
        run: async () => {
          const out = await s.ec2.sendOnce(new AllocateAddressCommand({ Domain: 'vpc', TagSpecifications: tagSpec(s, 'elastic-ip', 'elastic-ip') }));
          s.found.addresses = [{ AllocationId: out.AllocationId, PublicIp: out.PublicIp, Domain: 'vpc' }];
          return `allocated ${out.PublicIp} (${out.AllocationId})`;
        },
      });
    } else {
      steps.push(...warnDuplicates('elastic-ip', s.found.addresses.map((a) => a.AllocationId)), { subject: 'elastic-ip', note: `already allocated (${addr.PublicIp}, ${addr.AllocationId})` });
    }
    const lbInstance = instanceFor(s, lb);
    if (!addr || !lbInstance || addr.InstanceId !== lbInstance.InstanceId) {
      steps.push({
        subject: 'elastic-ip',
        plan: `associate with ${lb}${lbInstance ? ` (${lbInstance.InstanceId})` : ''}`,
        run: async () => {
          const a = first(s.found.addresses)!;
          const id = instanceFor(s, lb)!.InstanceId!;
          const out = await consistent(s, () => s.ec2.send(new AssociateAddressCommand({ AllocationId: a.AllocationId, InstanceId: id, AllowReassociation: true })));
          s.found.addresses = [{ ...a, InstanceId: id, AssociationId: out.AssociationId }];
          return `${a.PublicIp} associated with ${lb} (${id})`;
        },
      });
    } else {
      steps.push({ subject: 'elastic-ip', note: `${addr.PublicIp} associated with ${lb} (${lbInstance.InstanceId})` });
    }
    return steps;
  },
  probes(s) {
    const alloc = first(s.found.addresses)?.AllocationId ?? PLACEHOLDER.eipalloc;
    const assoc = first(s.found.addresses)?.AssociationId ?? PLACEHOLDER.eipassoc;
    const id = instanceFor(s, s.desired.loadBalancer)?.InstanceId ?? PLACEHOLDER.instance;
    return [
      { action: 'AllocateAddress', subject: 'elastic-ip', call: () => s.ec2.send(new AllocateAddressCommand({ Domain: 'vpc', TagSpecifications: tagSpec(s, 'elastic-ip', 'elastic-ip'), DryRun: true })) },
      { action: 'AssociateAddress', subject: 'elastic-ip', call: () => s.ec2.send(new AssociateAddressCommand({ AllocationId: alloc, InstanceId: id, AllowReassociation: true, DryRun: true })) },
      { action: 'DisassociateAddress', subject: 'elastic-ip', call: () => s.ec2.send(new DisassociateAddressCommand({ AssociationId: assoc, DryRun: true })) },
      { action: 'ReleaseAddress', subject: 'elastic-ip', call: () => s.ec2.send(new ReleaseAddressCommand({ AllocationId: alloc, DryRun: true })) },
    ];
  },
  removals(s) {
    const steps: Step[] = [];
    for (const a of s.found.addresses) {
      if (a.AssociationId) {
        steps.push({
          subject: 'elastic-ip',
          plan: `disassociate ${a.PublicIp} from ${a.InstanceId}`,
          run: async () => {
            try {
              await s.ec2.send(new DisassociateAddressCommand({ AssociationId: a.AssociationId }));
            } catch (e) {
              if (!isAwsCode(e, 'NotFound')) throw e;
            }
            return `disassociated ${a.PublicIp}`;
          },
        });
      }
      steps.push({
        subject: 'elastic-ip',
        plan: `release ${a.PublicIp} (${a.AllocationId})`,
        run: async () => {
          const r = await removeWithRetry(s, 'elastic-ip', a.AllocationId!, () => s.ec2.send(new ReleaseAddressCommand({ AllocationId: a.AllocationId })));
          return r.startsWith('deleted') ? `released ${a.PublicIp} (${a.AllocationId})` : r;
        },
      });
    }
    return steps;
  },
};
