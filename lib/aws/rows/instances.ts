/**
 * The machines: the Ubuntu image to boot, one instance per inventory host at its private IP with a
 * public IP, the wait for "running", and source/dest check off.
 */
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInstanceTypesCommand,
  GetConsoleOutputCommand,
  ModifyInstanceAttributeCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  TerminateInstancesCommand,
  type Instance,
} from '@aws-sdk/client-ec2';
import type { Session, Step, Row } from '../table.ts';
import { PLACEHOLDER, first, tagSpec, consistent } from '../table.ts';
import { isAwsCode, formatMs } from '../ec2.ts';
import { clientToken, clusterFilters, tagValue, TAG_HOST, type DesiredInstance } from '../desired.ts';
import { CANONICAL_OWNER, pickUbuntuLts, ubuntuNameFilter } from '../ami.ts';
import { pollUntil } from '../wait.ts';

// ---------------------------------------------------------------------------------------------
// image: looked up, never created or deleted

/** The image: looked up (or the pinned one checked), never created or deleted. */
export const imageRow: Row = {
  role: 'image',
  async find(s) {
    if (s.mode === 'destroy') return;
    const type = s.desired.instances[0]?.instanceType ?? 't3.small';
    const types = await s.ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: [type as never] })).catch((e: unknown) => {
      if (isAwsCode(e, 'InvalidInstanceType')) throw new Error(`image: aws.instanceType "${type}" does not exist in ${s.desired.region}`);
      throw e;
    });
    const archs = types.InstanceTypes?.[0]?.ProcessorInfo?.SupportedArchitectures ?? [];
    const arch = archs.includes('x86_64') ? 'x86_64' : archs.includes('arm64') ? 'arm64' : undefined;
    if (!arch) throw new Error(`image: aws.instanceType "${type}" reports no x86_64 or arm64 support (${archs.join(', ') || 'none'})`);
    s.found.architecture = arch;
    if (s.desired.ami) {
      const out = await s.ec2.send(new DescribeImagesCommand({ ImageIds: [s.desired.ami] })).catch((e: unknown) => {
        if (isAwsCode(e, 'NotFound', 'InvalidAMIID.Malformed')) return { Images: [] };
        throw e;
      });
      const img = out.Images?.[0];
      if (!img) throw new Error(`image: aws.ami ${s.desired.ami} does not exist in ${s.desired.region} or this account cannot see it`);
      if (img.Architecture !== arch) throw new Error(`image: aws.ami ${s.desired.ami} is ${img.Architecture} but ${type} runs ${arch}`);
      s.found.image = img;
      return;
    }
    const out = await s.ec2.send(
      new DescribeImagesCommand({
        Owners: [CANONICAL_OWNER],
        Filters: [
          { Name: 'name', Values: [ubuntuNameFilter(arch)] },
          { Name: 'state', Values: ['available'] },
          { Name: 'architecture', Values: [arch] },
        ],
      }),
    );
    s.found.image = pickUbuntuLts(out.Images ?? [], arch);
    if (!s.found.image) throw new Error(`image: Canonical (${CANONICAL_OWNER}) publishes no Ubuntu LTS image for ${arch} in ${s.desired.region}; pin one with aws.ami`);
  },
  changes(s) {
    const img = s.found.image!;
    return [{ subject: 'image', note: `${img.ImageId} (${img.Name}${s.desired.ami ? ', pinned by the inventory' : ''})` }];
  },
  probes() {
    return [];
  },
  removals() {
    return [];
  },
};

// ---------------------------------------------------------------------------------------------
// instances: one per inventory host, at its private IP, with a public IP

const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];

function hostOf(i: Instance): string | undefined {
  return tagValue(i.Tags, TAG_HOST);
}

/** The cluster's instance for `host`: a running one if there are several. */
export function instanceFor(s: Session, host: string): Instance | undefined {
  const all = s.found.instances.filter((i) => hostOf(i) === host && LIVE_STATES.includes(i.State?.Name ?? ''));
  return all.find((i) => i.State?.Name === 'running') ?? all[0];
}

async function describeInstances(s: Session, ids: string[]): Promise<Instance[]> {
  try {
    const out = await s.ec2.send(new DescribeInstancesCommand({ InstanceIds: ids }));
    return (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
  } catch (e) {
    if (isAwsCode(e, 'InvalidInstanceID.NotFound')) return []; // just launched, not visible yet
    throw e;
  }
}

function replaceInstances(s: Session, fresh: Instance[]): void {
  const byId = new Map(fresh.map((i) => [i.InstanceId, i]));
  s.found.instances = s.found.instances.map((i) => byId.get(i.InstanceId) ?? i);
}

async function launch(s: Session, host: DesiredInstance): Promise<string> {
  const subnet = first(s.found.subnets)!.SubnetId!;
  const sg = first(s.found.securityGroups)!.GroupId!;
  const image = s.found.image!;
  for (let attempt = 0; attempt < 5; attempt++) {
    const out = await consistent(s, () =>
      s.ec2.send(
        new RunInstancesCommand({
          ImageId: image.ImageId,
          InstanceType: host.instanceType as never,
          KeyName: s.desired.keyName,
          MinCount: 1,
          MaxCount: 1,
          ClientToken: clientToken(subnet, host, attempt),
          // A fixed private IP together with a public one needs the NetworkInterfaces form.
          NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: subnet, PrivateIpAddress: host.privateIp, AssociatePublicIpAddress: true, Groups: [sg], DeleteOnTermination: true }],
          BlockDeviceMappings: [{ DeviceName: image.RootDeviceName ?? '/dev/sda1', Ebs: { VolumeSize: s.desired.rootVolumeGiB, VolumeType: 'gp3', DeleteOnTermination: true } }],
          MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' },
          TagSpecifications: [
            ...tagSpec(s, 'instance', host.role, host.name),
            ...tagSpec(s, 'volume', host.role, host.name),
            ...tagSpec(s, 'network-interface', host.role, host.name),
          ],
        }),
      ),
    );
    const inst = out.Instances?.[0];
    if (!inst?.InstanceId) throw new Error(`${host.name}: RunInstances returned no instance`);
    const state = inst.State?.Name ?? 'unknown';
    if (state === 'terminated' || state === 'shutting-down') {
      // EC2 remembered this client token from an instance that has since been terminated.
      s.log.info(host.name, `client token led to ${inst.InstanceId}, which is ${state}; launching with the next token`);
      continue;
    }
    s.found.instances = [...s.found.instances.filter((i) => i.InstanceId !== inst.InstanceId), inst];
    return `launched ${inst.InstanceId} (${host.instanceType} at ${host.privateIp}, ${state})`;
  }
  throw new Error(`${host.name}: every client token tried led to a terminated instance; run again later`);
}

/** One instance per inventory host; destroy terminates them and waits until they are gone. */
export const instancesRow: Row = {
  role: 'instances',
  async find(s) {
    const states = s.mode === 'destroy' ? [...LIVE_STATES, 'shutting-down'] : LIVE_STATES;
    const out = await s.ec2.send(
      new DescribeInstancesCommand({ Filters: [...clusterFilters(s.desired.cluster), { Name: 'instance-state-name', Values: states }] }),
    );
    s.found.instances = (out.Reservations ?? []).flatMap((r) => r.Instances ?? []);
  },
  changes(s) {
    const steps: Step[] = [];
    for (const host of s.desired.instances) {
      const all = s.found.instances.filter((i) => hostOf(i) === host.name);
      const inst = instanceFor(s, host.name);
      if (!inst) {
        steps.push({ subject: host.name, plan: `launch ${host.instanceType} at ${host.privateIp} from ${s.found.image?.ImageId ?? 'the image'}`, run: () => launch(s, host) });
        continue;
      }
      if (all.length > 1) steps.push({ subject: host.name, warn: true, note: `${all.length} instances carry this host's tags (${all.map((i) => i.InstanceId).join(', ')}); using ${inst.InstanceId}. --destroy removes them all` });
      if (inst.PrivateIpAddress !== host.privateIp) {
        throw new Error(`${host.name}: ${inst.InstanceId} has private IP ${inst.PrivateIpAddress} but the inventory says ${host.privateIp}; fix the inventory or run with --destroy first`);
      }
      if (inst.InstanceType !== host.instanceType) {
        steps.push({ subject: host.name, warn: true, note: `${inst.InstanceId} is ${inst.InstanceType} but aws.instanceType says ${host.instanceType}; hardway does not resize instances` });
      }
      const state = inst.State?.Name;
      if (state === 'stopped' || state === 'stopping') {
        steps.push({
          subject: host.name,
          plan: `start ${inst.InstanceId} (${state})`,
          run: async () => {
            await pollUntil(async () => ((await describeInstances(s, [inst.InstanceId!]))[0]?.State?.Name === 'stopped' ? true : undefined), {
              intervalMs: s.timings.pollMs,
              timeoutMs: s.timings.runningTimeoutMs,
              onTimeout: () => `${host.name}: ${inst.InstanceId} did not finish stopping in ${formatMs(s.timings.runningTimeoutMs)}`,
            });
            await s.ec2.send(new StartInstancesCommand({ InstanceIds: [inst.InstanceId!] }));
            return `started ${inst.InstanceId} (its public IP changes on every start)`;
          },
        });
      } else {
        steps.push({ subject: host.name, note: `already exists (${inst.InstanceId}, ${state}, ${inst.PrivateIpAddress})` });
      }
    }
    const known = new Set(s.desired.instances.map((h) => h.name));
    for (const i of s.found.instances.filter((x) => !known.has(hostOf(x) ?? ''))) {
      steps.push({ subject: hostOf(i) ?? 'instances', warn: true, note: `${i.InstanceId} carries this cluster's tags but the inventory has no such host; --destroy removes it` });
    }
    return steps;
  },
  probes(s) {
    const subnet = first(s.found.subnets)?.SubnetId ?? PLACEHOLDER.subnet;
    const sg = first(s.found.securityGroups)?.GroupId ?? PLACEHOLDER.sg;
    const host = s.desired.instances[0]!;
    const id = first(s.found.instances)?.InstanceId ?? PLACEHOLDER.instance;
    return [
      {
        action: 'RunInstances',
        subject: 'instances',
        call: () =>
          s.ec2.send(
            new RunInstancesCommand({
              ImageId: s.found.image?.ImageId ?? PLACEHOLDER.ami,
              InstanceType: host.instanceType as never,
              KeyName: s.desired.keyName,
              MinCount: 1,
              MaxCount: 1,
              NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: subnet, PrivateIpAddress: host.privateIp, AssociatePublicIpAddress: true, Groups: [sg], DeleteOnTermination: true }],
              TagSpecifications: [...tagSpec(s, 'instance', host.role, host.name), ...tagSpec(s, 'volume', host.role, host.name)],
              DryRun: true,
            }),
          ),
      },
      { action: 'ModifyInstanceAttribute', subject: 'instances', call: () => s.ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, SourceDestCheck: { Value: false }, DryRun: true })) },
      { action: 'StartInstances', subject: 'instances', call: () => s.ec2.send(new StartInstancesCommand({ InstanceIds: [id], DryRun: true })) },
      { action: 'GetConsoleOutput', subject: 'instances', call: () => s.ec2.send(new GetConsoleOutputCommand({ InstanceId: id, DryRun: true })) },
      { action: 'TerminateInstances', subject: 'instances', call: () => s.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id], DryRun: true })) },
    ];
  },
  removals(s) {
    const all = s.found.instances;
    if (all.length === 0) return [];
    const toTerminate = all.filter((i) => i.State?.Name !== 'shutting-down');
    const steps: Step[] = toTerminate.map((i) => ({
      subject: hostOf(i) ?? 'instances',
      plan: `terminate ${i.InstanceId} (${i.State?.Name})`,
      run: async () => {
        try {
          await s.ec2.send(new TerminateInstancesCommand({ InstanceIds: [i.InstanceId!] }));
        } catch (e) {
          if (isAwsCode(e, 'NotFound')) return `${i.InstanceId} was already gone`;
          throw e;
        }
        return `terminating ${i.InstanceId}`;
      },
    }));
    steps.push({
      subject: 'instances',
      plan: `wait until ${all.length} instance(s) are terminated, so nothing still uses the network`,
      run: async () => {
        const ids = all.map((i) => i.InstanceId!);
        await pollUntil(
          async () => {
            const now = await describeInstances(s, ids);
            const left = now.filter((i) => i.State?.Name !== 'terminated');
            return left.length === 0 ? true : undefined;
          },
          {
            intervalMs: s.timings.pollMs,
            timeoutMs: s.timings.terminatedTimeoutMs,
            onTimeout: () => `instances: not all of ${ids.join(', ')} terminated within ${formatMs(s.timings.terminatedTimeoutMs)}; run --destroy again to continue`,
          },
        );
        return `all ${ids.length} terminated`;
      },
    });
    return steps;
  },
};

// ---------------------------------------------------------------------------------------------
// waiting for "running" (then source/dest check can be changed and public IPs are final)

/** Waits until every instance is running. */
export const runningRow: Row = {
  role: 'running',
  async find() {},
  changes(s) {
    const notRunning = s.desired.instances.filter((h) => instanceFor(s, h.name)?.State?.Name !== 'running');
    if (notRunning.length === 0) return [{ subject: 'instances', note: `all ${s.desired.instances.length} running` }];
    return [
      {
        subject: 'instances',
        plan: `wait until ${notRunning.map((h) => h.name).join(', ')} are running`,
        run: async () => {
          const ids = s.desired.instances.map((h) => instanceFor(s, h.name)?.InstanceId).filter((x): x is string => !!x);
          let last: Instance[] = [];
          await pollUntil(
            async () => {
              last = await describeInstances(s, ids);
              for (const i of last) {
                if (i.State?.Name === 'terminated' || i.State?.Name === 'shutting-down') {
                  throw new Error(`${hostOf(i)}: ${i.InstanceId} is ${i.State.Name}: ${i.StateReason?.Message ?? 'no reason given'}; run again to replace it`);
                }
              }
              return last.length === ids.length && last.every((i) => i.State?.Name === 'running') ? true : undefined;
            },
            {
              intervalMs: s.timings.pollMs,
              timeoutMs: s.timings.runningTimeoutMs,
              onTimeout: () =>
                `instances: still not running after ${formatMs(s.timings.runningTimeoutMs)}: ${last
                  .filter((i) => i.State?.Name !== 'running')
                  .map((i) => `${hostOf(i)} ${i.State?.Name}`)
                  .join(', ') || 'not visible yet'}; run again to keep waiting`,
            },
          );
          replaceInstances(s, last);
          return `all ${ids.length} running`;
        },
      },
    ];
  },
  probes() {
    return [];
  },
  removals() {
    return [];
  },
};

// ---------------------------------------------------------------------------------------------
// source/dest check off: pod traffic is routed through the nodes with pod IPs EC2 did not assign

/** Source/dest check off on every instance. */
export const sourceDestRow: Row = {
  role: 'source-dest-check',
  async find() {},
  changes(s) {
    return s.desired.instances.map((h): Step => {
      const inst = instanceFor(s, h.name);
      if (inst && inst.SourceDestCheck === false) return { subject: h.name, note: 'source/dest check already off' };
      return {
        subject: h.name,
        plan: 'turn off source/dest check (pod traffic is routed through the node)',
        run: async () => {
          const id = instanceFor(s, h.name)!.InstanceId!;
          await consistent(s, () => s.ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, SourceDestCheck: { Value: false } })));
          return `source/dest check off (${id})`;
        },
      };
    });
  },
  probes() {
    return [];
  },
  removals() {
    return [];
  },
};


/** Re-reads the cluster's instances (after the Elastic IP moved, public IPs change). */
export async function refreshInstances(s: Session): Promise<void> {
  const ids = s.found.instances.map((i) => i.InstanceId!).filter(Boolean);
  if (ids.length) replaceInstances(s, await describeInstances(s, ids));
}
