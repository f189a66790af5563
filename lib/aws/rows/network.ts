/**
 * The network rows: VPC (DNS support and hostnames on), internet gateway, one subnet spanning the
 * VPC, and a route table whose default route leaves through the gateway.
 */
import {
  AssociateRouteTableCommand,
  AttachInternetGatewayCommand,
  CreateInternetGatewayCommand,
  CreateRouteCommand,
  CreateRouteTableCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  DeleteInternetGatewayCommand,
  DeleteRouteTableCommand,
  DeleteSubnetCommand,
  DeleteVpcCommand,
  DescribeInstanceTypeOfferingsCommand,
  DescribeInternetGatewaysCommand,
  DescribeRouteTablesCommand,
  DescribeSubnetsCommand,
  DescribeVpcAttributeCommand,
  DescribeVpcsCommand,
  DetachInternetGatewayCommand,
  DisassociateRouteTableCommand,
  ModifyVpcAttributeCommand,
  ReplaceRouteCommand,
} from '@aws-sdk/client-ec2';
import type { Step, Row } from '../table.ts';
import { PLACEHOLDER, first, tagSpec, warnDuplicates, consistent, removeWithRetry } from '../table.ts';
import { isAwsCode } from '../ec2.ts';
import { clusterFilters, routeTableToken } from '../desired.ts';

// ---------------------------------------------------------------------------------------------
// VPC

/** The VPC, with DNS support and DNS hostnames on. */
export const vpcRow: Row = {
  role: 'vpc',
  async find(s) {
    const out = await s.ec2.send(new DescribeVpcsCommand({ Filters: clusterFilters(s.desired.cluster, 'vpc') }));
    s.found.vpcs = out.Vpcs ?? [];
    const vpc = first(s.found.vpcs);
    if (vpc && s.mode === 'up') {
      const [support, hostnames] = await Promise.all([
        s.ec2.send(new DescribeVpcAttributeCommand({ VpcId: vpc.VpcId, Attribute: 'enableDnsSupport' })),
        s.ec2.send(new DescribeVpcAttributeCommand({ VpcId: vpc.VpcId, Attribute: 'enableDnsHostnames' })),
      ]);
      s.found.vpcDns = { support: support.EnableDnsSupport?.Value === true, hostnames: hostnames.EnableDnsHostnames?.Value === true };
    }
  },
  changes(s) {
    const vpc = first(s.found.vpcs);
    const steps: Step[] = [];
    const dns = vpc ? s.found.vpcDns : { support: false, hostnames: false };
    if (!vpc) {
      steps.push({
        subject: 'vpc',
        plan: `create ${s.desired.vpcCidr}`,
        run: async () => {
          const out = await s.ec2.sendOnce(new CreateVpcCommand({ CidrBlock: s.desired.vpcCidr, TagSpecifications: tagSpec(s, 'vpc', 'vpc') }));
          s.found.vpcs = [out.Vpc!];
          return `created ${out.Vpc!.VpcId} (${s.desired.vpcCidr})`;
        },
      });
    } else {
      if (vpc.CidrBlock !== s.desired.vpcCidr) {
        throw new Error(`vpc: ${vpc.VpcId} has ${vpc.CidrBlock} but the inventory says aws.vpcCidr ${s.desired.vpcCidr}; a VPC's range cannot change: run with --destroy first`);
      }
      steps.push(...warnDuplicates('vpc', s.found.vpcs.map((v) => v.VpcId)), { subject: 'vpc', note: `already exists (${vpc.VpcId}, ${vpc.CidrBlock})` });
    }
    for (const [attr, on, label] of [
      ['EnableDnsSupport', dns?.support, 'DNS support'],
      ['EnableDnsHostnames', dns?.hostnames, 'DNS hostnames'],
    ] as const) {
      if (on) continue;
      steps.push({
        subject: 'vpc',
        plan: `turn on ${label}`,
        run: async () => {
          const id = first(s.found.vpcs)!.VpcId!;
          await consistent(s, () => s.ec2.send(new ModifyVpcAttributeCommand({ VpcId: id, [attr]: { Value: true } })));
          return `${label} on (${id})`;
        },
      });
    }
    return steps;
  },
  probes(s) {
    const id = first(s.found.vpcs)?.VpcId ?? PLACEHOLDER.vpc;
    return [
      { action: 'CreateVpc', subject: 'vpc', call: () => s.ec2.send(new CreateVpcCommand({ CidrBlock: s.desired.vpcCidr, TagSpecifications: tagSpec(s, 'vpc', 'vpc'), DryRun: true })) },
      // ModifyVpcAttribute has no DryRun parameter: it cannot be proven without changing something.
      { action: 'ModifyVpcAttribute', subject: 'vpc', call: () => Promise.reject(Object.assign(new Error('EC2 offers no DryRun for this action; it needs ec2:ModifyVpcAttribute'), { name: 'NoDryRun' })) },
      { action: 'DeleteVpc', subject: 'vpc', call: () => s.ec2.send(new DeleteVpcCommand({ VpcId: id, DryRun: true })) },
    ];
  },
  removals(s) {
    return s.found.vpcs.map((v) => ({
      subject: 'vpc',
      plan: `delete ${v.VpcId} (${v.CidrBlock})`,
      run: () => removeWithRetry(s, 'vpc', v.VpcId!, () => s.ec2.send(new DeleteVpcCommand({ VpcId: v.VpcId }))),
    }));
  },
};

// ---------------------------------------------------------------------------------------------
// internet gateway

/** The internet gateway, attached to the VPC. */
export const internetGatewayRow: Row = {
  role: 'internet-gateway',
  async find(s) {
    const out = await s.ec2.send(new DescribeInternetGatewaysCommand({ Filters: clusterFilters(s.desired.cluster, 'internet-gateway') }));
    s.found.internetGateways = out.InternetGateways ?? [];
  },
  changes(s) {
    const igw = first(s.found.internetGateways);
    const vpcId = first(s.found.vpcs)?.VpcId;
    const steps: Step[] = [];
    if (!igw) {
      steps.push({
        subject: 'internet-gateway',
        plan: 'create',
        run: async () => {
          const out = await s.ec2.sendOnce(new CreateInternetGatewayCommand({ TagSpecifications: tagSpec(s, 'internet-gateway', 'internet-gateway') }));
          s.found.internetGateways = [out.InternetGateway!];
          return `created ${out.InternetGateway!.InternetGatewayId}`;
        },
      });
    } else {
      steps.push(...warnDuplicates('internet-gateway', s.found.internetGateways.map((g) => g.InternetGatewayId)), {
        subject: 'internet-gateway',
        note: `already exists (${igw.InternetGatewayId})`,
      });
    }
    const attachedTo = (igw?.Attachments ?? []).map((a) => a.VpcId);
    if (igw && vpcId && attachedTo.length > 0 && !attachedTo.includes(vpcId)) {
      throw new Error(`internet-gateway: ${igw.InternetGatewayId} is attached to ${attachedTo.join(', ')}, not this cluster's ${vpcId}; run with --destroy to clean up`);
    }
    if (!vpcId || !attachedTo.includes(vpcId)) {
      steps.push({
        subject: 'internet-gateway',
        plan: `attach to ${vpcId ?? 'the new VPC'}`,
        run: async () => {
          const id = first(s.found.internetGateways)!.InternetGatewayId!;
          const vpc = first(s.found.vpcs)!.VpcId!;
          await consistent(s, () => s.ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: id, VpcId: vpc })));
          return `attached ${id} to ${vpc}`;
        },
      });
    } else {
      steps.push({ subject: 'internet-gateway', note: `attached to ${vpcId}` });
    }
    return steps;
  },
  probes(s) {
    const id = first(s.found.internetGateways)?.InternetGatewayId ?? PLACEHOLDER.igw;
    const vpc = first(s.found.vpcs)?.VpcId ?? PLACEHOLDER.vpc;
    return [
      { action: 'CreateInternetGateway', subject: 'internet-gateway', call: () => s.ec2.send(new CreateInternetGatewayCommand({ TagSpecifications: tagSpec(s, 'internet-gateway', 'internet-gateway'), DryRun: true })) },
      { action: 'AttachInternetGateway', subject: 'internet-gateway', call: () => s.ec2.send(new AttachInternetGatewayCommand({ InternetGatewayId: id, VpcId: vpc, DryRun: true })) },
      { action: 'DetachInternetGateway', subject: 'internet-gateway', call: () => s.ec2.send(new DetachInternetGatewayCommand({ InternetGatewayId: id, VpcId: vpc, DryRun: true })) },
      { action: 'DeleteInternetGateway', subject: 'internet-gateway', call: () => s.ec2.send(new DeleteInternetGatewayCommand({ InternetGatewayId: id, DryRun: true })) },
    ];
  },
  removals(s) {
    const steps: Step[] = [];
    for (const igw of s.found.internetGateways) {
      for (const a of igw.Attachments ?? []) {
        steps.push({
          subject: 'internet-gateway',
          plan: `detach ${igw.InternetGatewayId} from ${a.VpcId}`,
          run: async () => {
            const r = await removeWithRetry(s, 'internet-gateway', igw.InternetGatewayId!, () =>
              s.ec2.send(new DetachInternetGatewayCommand({ InternetGatewayId: igw.InternetGatewayId, VpcId: a.VpcId })),
            );
            return r.startsWith('deleted') ? `detached ${igw.InternetGatewayId} from ${a.VpcId}` : r;
          },
        });
      }
      steps.push({
        subject: 'internet-gateway',
        plan: `delete ${igw.InternetGatewayId}`,
        run: () => removeWithRetry(s, 'internet-gateway', igw.InternetGatewayId!, () => s.ec2.send(new DeleteInternetGatewayCommand({ InternetGatewayId: igw.InternetGatewayId }))),
      });
    }
    return steps;
  },
};

// ---------------------------------------------------------------------------------------------
// subnet

/** One subnet spanning the VPC, in a zone that offers the instance type. */
export const subnetRow: Row = {
  role: 'subnet',
  async find(s) {
    const out = await s.ec2.send(new DescribeSubnetsCommand({ Filters: clusterFilters(s.desired.cluster, 'subnet') }));
    s.found.subnets = out.Subnets ?? [];
    if (s.mode !== 'destroy' && s.found.subnets.length === 0) {
      // Not every zone offers every instance type: pick one that offers ours.
      const offers = await s.ec2.send(
        new DescribeInstanceTypeOfferingsCommand({ LocationType: 'availability-zone', Filters: [{ Name: 'instance-type', Values: [s.desired.instances[0]?.instanceType ?? 't3.small'] }] }),
      );
      const zones = (offers.InstanceTypeOfferings ?? []).map((o) => o.Location!).filter(Boolean).sort();
      if (zones.length === 0) throw new Error(`subnet: no availability zone in ${s.desired.region} offers ${s.desired.instances[0]?.instanceType}; pick another aws.instanceType or aws.region`);
      s.found.availabilityZone = zones[0];
    }
  },
  changes(s) {
    const subnet = first(s.found.subnets);
    const vpcId = first(s.found.vpcs)?.VpcId;
    if (!subnet) {
      return [
        {
          subject: 'subnet',
          plan: `create ${s.desired.subnetCidr} in ${s.found.availabilityZone ?? 'a zone that offers the instance type'}`,
          run: async () => {
            const vpc = first(s.found.vpcs)!.VpcId!;
            const out = await consistent(s, () =>
              s.ec2.sendOnce(
                new CreateSubnetCommand({ VpcId: vpc, CidrBlock: s.desired.subnetCidr, AvailabilityZone: s.found.availabilityZone, TagSpecifications: tagSpec(s, 'subnet', 'subnet') }),
              ),
            );
            s.found.subnets = [out.Subnet!];
            return `created ${out.Subnet!.SubnetId} (${s.desired.subnetCidr} in ${out.Subnet!.AvailabilityZone})`;
          },
        },
      ];
    }
    if (vpcId && subnet.VpcId !== vpcId) throw new Error(`subnet: ${subnet.SubnetId} is in ${subnet.VpcId}, not this cluster's ${vpcId}; run with --destroy to clean up`);
    if (subnet.CidrBlock !== s.desired.subnetCidr) {
      throw new Error(`subnet: ${subnet.SubnetId} has ${subnet.CidrBlock} but the inventory says ${s.desired.subnetCidr}; run with --destroy first`);
    }
    return [...warnDuplicates('subnet', s.found.subnets.map((x) => x.SubnetId)), { subject: 'subnet', note: `already exists (${subnet.SubnetId}, ${subnet.CidrBlock} in ${subnet.AvailabilityZone})` }];
  },
  probes(s) {
    const vpc = first(s.found.vpcs)?.VpcId ?? PLACEHOLDER.vpc;
    const id = first(s.found.subnets)?.SubnetId ?? PLACEHOLDER.subnet;
    return [
      { action: 'CreateSubnet', subject: 'subnet', call: () => s.ec2.send(new CreateSubnetCommand({ VpcId: vpc, CidrBlock: s.desired.subnetCidr, TagSpecifications: tagSpec(s, 'subnet', 'subnet'), DryRun: true })) },
      { action: 'DeleteSubnet', subject: 'subnet', call: () => s.ec2.send(new DeleteSubnetCommand({ SubnetId: id, DryRun: true })) },
    ];
  },
  removals(s) {
    return s.found.subnets.map((x) => ({
      subject: 'subnet',
      plan: `delete ${x.SubnetId} (${x.CidrBlock})`,
      run: () => removeWithRetry(s, 'subnet', x.SubnetId!, () => s.ec2.send(new DeleteSubnetCommand({ SubnetId: x.SubnetId }))),
    }));
  },
};

// ---------------------------------------------------------------------------------------------
// route table: a default route to the internet gateway, associated with the subnet

/** The route table: 0.0.0.0/0 via the gateway, associated with the subnet. */
export const routeTableRow: Row = {
  role: 'route-table',
  async find(s) {
    const out = await s.ec2.send(new DescribeRouteTablesCommand({ Filters: clusterFilters(s.desired.cluster, 'route-table') }));
    s.found.routeTables = out.RouteTables ?? [];
  },
  changes(s) {
    const rt = first(s.found.routeTables);
    const steps: Step[] = [];
    if (!rt) {
      steps.push({
        subject: 'route-table',
        plan: 'create',
        run: async () => {
          const vpc = first(s.found.vpcs)!.VpcId!;
          const out = await consistent(s, () =>
            s.ec2.send(new CreateRouteTableCommand({ VpcId: vpc, ClientToken: routeTableToken(vpc), TagSpecifications: tagSpec(s, 'route-table', 'route-table') })),
          );
          s.found.routeTables = [out.RouteTable!];
          return `created ${out.RouteTable!.RouteTableId}`;
        },
      });
    } else {
      steps.push(...warnDuplicates('route-table', s.found.routeTables.map((r) => r.RouteTableId)), { subject: 'route-table', note: `already exists (${rt.RouteTableId})` });
    }
    const igwId = first(s.found.internetGateways)?.InternetGatewayId;
    const route = rt?.Routes?.find((r) => r.DestinationCidrBlock === '0.0.0.0/0');
    if (!route) {
      steps.push({
        subject: 'route-table',
        plan: `add the default route 0.0.0.0/0 via ${igwId ?? 'the internet gateway'}`,
        run: async () => {
          const id = first(s.found.routeTables)!.RouteTableId!;
          const gw = first(s.found.internetGateways)!.InternetGatewayId!;
          await consistent(s, () => s.ec2.send(new CreateRouteCommand({ RouteTableId: id, DestinationCidrBlock: '0.0.0.0/0', GatewayId: gw })));
          return `added 0.0.0.0/0 via ${gw}`;
        },
      });
    } else if (route.GatewayId !== igwId || route.State === 'blackhole') {
      steps.push({
        subject: 'route-table',
        plan: `point 0.0.0.0/0 at ${igwId} (it goes to ${route.GatewayId ?? 'something else'}, ${route.State})`,
        run: async () => {
          const id = first(s.found.routeTables)!.RouteTableId!;
          const gw = first(s.found.internetGateways)!.InternetGatewayId!;
          await s.ec2.send(new ReplaceRouteCommand({ RouteTableId: id, DestinationCidrBlock: '0.0.0.0/0', GatewayId: gw }));
          return `0.0.0.0/0 now via ${gw}`;
        },
      });
    } else {
      steps.push({ subject: 'route-table', note: `0.0.0.0/0 via ${igwId}` });
    }
    const subnetId = first(s.found.subnets)?.SubnetId;
    if (!subnetId || !rt?.Associations?.some((a) => a.SubnetId === subnetId)) {
      steps.push({
        subject: 'route-table',
        plan: `associate with ${subnetId ?? 'the subnet'}`,
        run: async () => {
          const id = first(s.found.routeTables)!.RouteTableId!;
          const subnet = first(s.found.subnets)!.SubnetId!;
          const out = await consistent(s, () => s.ec2.send(new AssociateRouteTableCommand({ RouteTableId: id, SubnetId: subnet })));
          return `associated with ${subnet} (${out.AssociationId})`;
        },
      });
    } else {
      steps.push({ subject: 'route-table', note: `associated with ${subnetId}` });
    }
    return steps;
  },
  probes(s) {
    const vpc = first(s.found.vpcs)?.VpcId ?? PLACEHOLDER.vpc;
    const id = first(s.found.routeTables)?.RouteTableId ?? PLACEHOLDER.rtb;
    const igw = first(s.found.internetGateways)?.InternetGatewayId ?? PLACEHOLDER.igw;
    const subnet = first(s.found.subnets)?.SubnetId ?? PLACEHOLDER.subnet;
    const assoc = first(s.found.routeTables)?.Associations?.find((a) => !a.Main)?.RouteTableAssociationId ?? PLACEHOLDER.rtbassoc;
    return [
      { action: 'CreateRouteTable', subject: 'route-table', call: () => s.ec2.send(new CreateRouteTableCommand({ VpcId: vpc, TagSpecifications: tagSpec(s, 'route-table', 'route-table'), DryRun: true })) },
      { action: 'CreateRoute', subject: 'route-table', call: () => s.ec2.send(new CreateRouteCommand({ RouteTableId: id, DestinationCidrBlock: '0.0.0.0/0', GatewayId: igw, DryRun: true })) },
      { action: 'AssociateRouteTable', subject: 'route-table', call: () => s.ec2.send(new AssociateRouteTableCommand({ RouteTableId: id, SubnetId: subnet, DryRun: true })) },
      { action: 'DisassociateRouteTable', subject: 'route-table', call: () => s.ec2.send(new DisassociateRouteTableCommand({ AssociationId: assoc, DryRun: true })) },
      { action: 'DeleteRouteTable', subject: 'route-table', call: () => s.ec2.send(new DeleteRouteTableCommand({ RouteTableId: id, DryRun: true })) },
    ];
  },
  removals(s) {
    const steps: Step[] = [];
    for (const rt of s.found.routeTables) {
      for (const a of (rt.Associations ?? []).filter((x) => !x.Main && x.RouteTableAssociationId)) {
        steps.push({
          subject: 'route-table',
          plan: `disassociate ${rt.RouteTableId} from ${a.SubnetId}`,
          run: async () => {
            try {
              await s.ec2.send(new DisassociateRouteTableCommand({ AssociationId: a.RouteTableAssociationId }));
            } catch (e) {
              if (!isAwsCode(e, 'NotFound')) throw e;
            }
            return `disassociated ${rt.RouteTableId} from ${a.SubnetId}`;
          },
        });
      }
      steps.push({
        subject: 'route-table',
        plan: `delete ${rt.RouteTableId}`,
        run: () => removeWithRetry(s, 'route-table', rt.RouteTableId!, () => s.ec2.send(new DeleteRouteTableCommand({ RouteTableId: rt.RouteTableId }))),
      });
    }
    return steps;
  },
};
