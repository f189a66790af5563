// The shipped six-host layout (lb-0, controller-0..2, worker-0..1) as a lab: 01-infra, SSH to
// every host under strict checking, 02-prep twice (changed, then already), --destroy leaves nothing.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestLab, type TestLab } from './helpers/lab.ts';
import { memoryLogger } from '../lib/log.ts';
import { forEachHost } from '../lib/ssh/index.ts';
import { planLab } from '../lib/lab/plan.ts';
import { labLeftovers } from '../lib/lab/provider.ts';
import { loadInventory } from '../lib/inventory.ts';

let lab: TestLab;

test.before(async () => {
  lab = await createTestLab('six', 'six');
});

test.after(async () => {
  await lab?.cleanup();
});

test('six hosts come up and answer over verified SSH', async () => {
  assert.equal(lab.hosts.map((h) => h.name), ['lb-0', 'controller-0', 'controller-1', 'controller-2', 'worker-0', 'worker-1']);
  const r = await lab.script('01-infra');
  assert.is(r.code, 0, r.stderr);
  const out = await forEachHost({ dir: lab.dir, log: memoryLogger(), dryRun: false }, lab.hosts.map((h) => ({ ...h })), { parallel: 6 }, async (s) => (await s.run('ip -4 -o addr show dev eth0')).stdout);
  for (const o of out) {
    assert.ok(o.ok, o.error);
    assert.match(String(o.value), `${lab.host(o.host).privateIp}/24`);
  }
});

test('02-prep: first run changes every host, second run finds all already', async () => {
  const first = await lab.script('02-prep', ['--json']);
  assert.is(first.code, 0, first.stderr);
  const r1 = JSON.parse(first.stdout) as { hosts: { host: string; counts: { changed: number } }[] };
  assert.is(r1.hosts.length, 6);
  for (const h of r1.hosts) assert.ok(h.counts.changed >= 3, `${h.host} changed ${h.counts.changed}`);
  const cfg = readFileSync(join(lab.dir, 'prep/lb-0/haproxy.cfg'), 'utf8');
  assert.is((cfg.match(/^\s+server controller-\d /gm) ?? []).length, 3);

  const second = await lab.script('02-prep', ['--json', '--parallel', '2']);
  assert.is(second.code, 0, second.stderr);
  const r2 = JSON.parse(second.stdout) as { hosts: { host: string; counts: { changed: number; already: number } }[] };
  for (const h of r2.hosts) {
    assert.is(h.counts.changed, 0, h.host);
    assert.ok(h.counts.already > 0);
  }
  for (const h of lab.hosts) assert.is((await lab.inHost(h.name, 'hostname')).trim(), h.name);
});

test('--destroy leaves nothing of the six hosts', async () => {
  const r = await lab.script('01-infra', ['--destroy']);
  assert.is(r.code, 0, r.stderr);
  const plan = planLab(loadInventory(lab.inventoryPath));
  assert.equal(await labLeftovers(plan, memoryLogger()), []);
});

test.run();
