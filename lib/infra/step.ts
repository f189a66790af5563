/** 01-infra: the machines, from the provider the inventory names. */
import type { Step } from '../runner.ts';
import type { InfraProvider } from './provider.ts';

async function providerFor(name: 'aws' | 'lab'): Promise<InfraProvider> {
  if (name === 'aws') return (await import('../aws/provider.ts')).awsProvider;
  return (await import('../lab/provider.ts')).labProvider;
}

export const infraStep: Step = {
  id: '01-infra',
  title: 'Create the machines',
  description:
    'With provider "aws": VPC, subnet, internet gateway, routes, security group, key pair and the six instances, ' +
    'tagged with the cluster name; re-running creates only what is missing. With provider "lab": one network ' +
    'namespace per host on a local bridge, each running a real sshd (needs root). Either way the workspace ends up ' +
    'with the SSH key, a verified known_hosts and the hosts\' addresses.',
  flags: [
    { name: 'destroy', type: 'boolean', description: 'remove everything this cluster created, in dependency order' },
    { name: 'check', type: 'boolean', description: 'pre-flight: prove the credentials/permissions suffice; create nothing' },
  ],
  writesWorkspace: (flags) => flags.check !== true,
  async run(ctx) {
    const provider = await providerFor(ctx.inventory.provider);
    if (ctx.flags.destroy && ctx.flags.check) throw new (await import('../errors.ts')).InputError('command line', '--destroy and --check cannot be combined');
    if (ctx.flags.destroy) return provider.destroy(ctx);
    if (ctx.flags.check) return provider.check(ctx);
    return provider.up(ctx);
  },
};
