// A run of 03-pki killed with SIGKILL (it and its cfssl/openssl children) at different moments,
// then run again to completion, gives a whole, valid PKI: every certificate verifies against its
// CA, every key matches its certificate, the manifest's sha256s match the files, no temp files.
// What was finished (issued.json written) before the kill is kept, not signed again.
//
// Kills land by time (early) and by progress seen on disk (a CA finished, leaves being signed,
// leaves being accepted), so they hit every phase whatever the machine's speed.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { parseInventory } from '../lib/inventory.ts';
import { planPki } from '../lib/pki/plan.ts';
import { makeInventory, workspace, startPkiCli, runPkiJson, killTree, exited, sleep, checkWorkspace, type Workspace } from './helpers/pki.ts';

const WORKERS = 30;
const running: ChildProcess[] = [];
const spaces: Workspace[] = [];
process.on('exit', () => running.forEach((c) => killTree(c)));
test.after(() => spaces.forEach((ws) => ws.remove()));

const plan = planPki(parseInventory(makeInventory({ workers: WORKERS })));
const CAS = plan.cas.map((c) => c.id);
const LEAVES = plan.leaves.map((l) => l.id);

interface Progress {
  /** CAs with their issued.json (finished). */
  cas: number;
  /** Leaf directories that exist (signing started). */
  leafDirs: number;
  /** Leaves with a key.pem on disk. */
  leafKeys: number;
  /** Leaves with their issued.json (finished: the record is written last). */
  leaves: number;
}

function progress(ws: Workspace): Progress {
  const pki = join(ws.dir, 'pki');
  const has = (id: string, f = '') => existsSync(join(pki, id, f));
  return {
    cas: CAS.filter((id) => has(id, 'issued.json')).length,
    leafDirs: LEAVES.filter((id) => has(id)).length,
    leafKeys: LEAVES.filter((id) => has(id, 'key.pem')).length,
    leaves: LEAVES.filter((id) => has(id, 'issued.json')).length,
  };
}

/** When to kill: after a delay, or as soon as the workspace shows some progress. */
type Trigger = { ms: number } | { label: string; when: (p: Progress) => boolean };
const label = (t: Trigger) => ('ms' in t ? `${t.ms}ms` : t.label);

/** Starts 03-pki and SIGKILLs its process group at the trigger; returns the progress it had made. */
async function killAt(ws: Workspace, trigger: Trigger): Promise<Progress & { exitedByItself: boolean }> {
  const child = startPkiCli(ws);
  running.push(child);
  const gone = exited(child);
  if ('ms' in trigger) await Promise.race([sleep(trigger.ms), gone]);
  else {
    while (child.exitCode === null && child.signalCode === null && !trigger.when(progress(ws))) await sleep(2);
  }
  const exitedByItself = child.exitCode !== null;
  killTree(child, 'SIGKILL');
  await gone;
  await sleep(50); // let the killed children go
  return { ...progress(ws), exitedByItself };
}

const seen: { label: string; at: Progress }[] = [];

async function scenario(tool: 'cfssl' | 'openssl', triggers: Trigger[]) {
  // A progress trigger can be outrun (the run finishes between two looks at the disk): start over
  // in a fresh workspace, a few times, rather than test nothing.
  let ws: Workspace | undefined;
  let at: Progress = { cas: 0, leafDirs: 0, leafKeys: 0, leaves: 0 };
  for (let attempt = 1; !ws; attempt++) {
    const candidate = workspace(makeInventory({ tool, keyAlgorithm: 'rsa-2048', workers: WORKERS }), `kill-${tool}`);
    spaces.push(candidate);
    const marks: { label: string; at: Progress }[] = [];
    let outrun = false;
    for (const t of triggers) {
      const k = await killAt(candidate, t);
      if (k.exitedByItself) {
        outrun = true;
        break;
      }
      at = k;
      marks.push({ label: `${tool} ${label(t)}`, at: k });
    }
    if (!outrun) {
      ws = candidate;
      seen.push(...marks);
    } else assert.ok(attempt < 3, `the run finished before the kill (${triggers.map(label).join(', ')}) ${attempt} times: make the inventory larger`);
  }
  assert.not.ok(existsSync(join(ws.dir, 'manifest.json')), 'a killed run wrote the manifest');
  const { result } = await runPkiJson(ws);
  assert.is(result.ok, true);
  // What was finished before the kill is kept; the rest is signed now (nothing lost, nothing done twice).
  assert.is(result.kept, at.leaves, `kept ${result.kept}, but ${at.leaves} leaves were finished at the kill`);
  assert.is(result.signed + result.resigned.length, LEAVES.length - at.leaves);
  for (const r of result.resigned as { id: string; reason: string }[]) assert.match(r.reason, /incomplete or changed on disk/, r.id);
  const cas = result.cas as Record<string, string>;
  assert.ok(Object.values(cas).filter((a) => a === 'kept').length >= at.cas, JSON.stringify(cas));
  assert.equal(await checkWorkspace(ws.dir, ws.inventory()), []);
}

const firstCa: Trigger = { label: 'first CA finished', when: (p) => p.cas >= 1 };
const signing: Trigger = { label: 'leaves being signed', when: (p) => p.cas === 3 && p.leafDirs >= 8 };
const accepting: Trigger = { label: 'first leaf accepted', when: (p) => p.leaves >= 1 };
const lateSigning: Trigger = { label: 'most leaves being signed', when: (p) => p.cas === 3 && p.leafDirs >= LEAVES.length * 0.75 };
const keysNoCerts: Trigger = { label: 'leaf keys on disk', when: (p) => p.leafKeys >= 5 };

for (const t of [{ ms: 150 }, { ms: 700 }, firstCa, signing, lateSigning, accepting]) {
  test(`cfssl: killed at ${label(t)}, then re-run: the PKI is whole and valid`, () => scenario('cfssl', [t]));
}
test(`openssl: killed at ${label(keysNoCerts)}, then re-run: the PKI is whole and valid`, () => scenario('openssl', [keysNoCerts]));
test('openssl: killed three times in a row (300ms, leaves being signed, first leaf accepted), then re-run', () =>
  scenario('openssl', [{ ms: 300 }, signing, accepting]));

test('the kills landed before the CAs, while signing and while accepting', () => {
  const at = seen.map((s) => s.at);
  const show = JSON.stringify(seen);
  process.stdout.write(`kills (CAs finished / leaf dirs / leaf keys / leaves finished, of ${LEAVES.length}):\n${seen.map((s) =>
    `  ${s.label}: ${s.at.cas} / ${s.at.leafDirs} / ${s.at.leafKeys} / ${s.at.leaves}`).join('\n')}\n`);
  assert.ok(at.some((a) => a.cas < 3 && a.leafDirs === 0), `no kill before the CAs were done: ${show}`);
  assert.ok(at.some((a) => a.cas === 3 && a.leafDirs > 0 && a.leaves === 0), `no kill while leaves were being signed: ${show}`);
  assert.ok(at.some((a) => a.leaves > 0 && a.leaves < LEAVES.length), `no kill while leaves were being accepted: ${show}`);
});

test.run();
