// Shared by test/kubeconfig*.test.ts (not a test file itself): inventories, real 03-pki
// workspaces and running the real scripts, as an operator would.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export type InventoryJson = Record<string, any>;

/** A small lab inventory: one load balancer, `controllers` controllers, two workers. */
export function inventoryJson(opts: { controllers?: number; lbPublicIp?: string; lbPrivateIp?: string; keyAlgorithm?: string; encryption?: string } = {}): InventoryJson {
  return {
    provider: 'lab',
    cluster: { name: 'hardway-test' },
    lab: { cidr: '10.240.0.0/24' },
    pki: { tool: 'cfssl', keyAlgorithm: opts.keyAlgorithm ?? 'rsa-2048' },
    ...(opts.encryption ? { encryption: { provider: opts.encryption } } : {}),
    loadBalancer: { name: 'lb-0', privateIp: opts.lbPrivateIp ?? '10.240.0.5', ...(opts.lbPublicIp ? { publicIp: opts.lbPublicIp } : {}) },
    controllers: Array.from({ length: opts.controllers ?? 2 }, (_, i) => ({ name: `controller-${i}`, privateIp: `10.240.0.${10 + i}` })),
    workers: [
      { name: 'worker-0', privateIp: '10.240.0.20' },
      { name: 'worker-1', privateIp: '10.240.0.21' },
    ],
  };
}

export interface Workspace {
  /** Temp root holding the inventory and the workspace. */
  readonly root: string;
  /** The workspace (--dir). */
  readonly dir: string;
  /** The inventory file (--inventory). */
  readonly inventory: string;
  setInventory(inv: InventoryJson): void;
  run(script: '03-pki' | '04-kubeconfig', ...args: string[]): Run;
  remove(): void;
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function workspace(inv: InventoryJson = inventoryJson()): Workspace {
  const root = mkdtempSync(join(tmpdir(), 'hardway-kubeconfig-'));
  const ws: Workspace = {
    root,
    dir: join(root, 'generated'),
    inventory: join(root, 'inventory.json'),
    setInventory: (i) => writeFileSync(ws.inventory, JSON.stringify(i, null, 2)),
    run: (script, ...args) => runScript(script, ['--inventory', ws.inventory, '--dir', ws.dir, ...args]),
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
  ws.setInventory(inv);
  return ws;
}

export function runScript(script: string, args: string[]): Run {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', `${script}.mjs`), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A workspace where 03-pki has run; throws with its output if it failed. */
export function pkiWorkspace(inv?: InventoryJson): Workspace {
  const ws = workspace(inv);
  must(ws.run('03-pki'), '03-pki');
  return ws;
}

export function must(r: Run, what: string): Run {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return r;
}
