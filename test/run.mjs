// Runs every test/*.test.ts in its own Node process (uvu under tsx, as ESM) so that a file that
// crashes or hangs cannot take the others down, then prints one closing line: "N passed, N failed".
//   node test/run.mjs            all files
//   node test/run.mjs pki lab    only files whose name contains one of the words
import { readdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.test.ts'))
  .filter((f) => filters.length === 0 || filters.some((w) => f.includes(w)))
  .sort();
const FILE_TIMEOUT_MS = Number(process.env.HARDWAY_TEST_TIMEOUT_MS ?? 20 * 60_000);

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of files) {
  process.stdout.write(`\n# ${file}\n`);
  const { code, output, timedOut } = await runFile(join(here, file));
  const total = count(output, 'Total');
  const ok = count(output, 'Passed');
  const skip = count(output, 'Skipped') ?? 0;
  if (total === undefined || ok === undefined) {
    failed += 1; // crashed before uvu could report: count the file as one failure
    process.stdout.write(`# ${file}: no uvu summary (exit ${code}${timedOut ? ', timed out' : ''}): counted as 1 failed\n`);
    continue;
  }
  passed += ok;
  skipped += skip;
  const bad = total - ok - skip;
  failed += bad > 0 ? bad : code === 0 ? 0 : 1;
}
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exitCode = failed > 0 || files.length === 0 ? 1 : 0;

function count(text, label) {
  const m = [...text.matchAll(new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'gm'))].pop();
  return m ? Number(m[1]) : undefined;
}

function runFile(path) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    const relay = (stream, sink) => stream.on('data', (b) => {
      output += b.toString();
      sink.write(b);
    });
    relay(child.stdout, process.stdout);
    relay(child.stderr, process.stderr);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGTERM'); } catch {}
    }, FILE_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: output.replace(/\x1b\[[0-9;]*m/g, ''), timedOut });
    });
  });
}
