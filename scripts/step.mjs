// Shared by every scripts/0N-*.mjs: lets Node 20 load the TypeScript library through tsx,
// then hands the step to the runner. Arguments are what follows the script's own path, so the
// scripts work the same under `node scripts/0N-x.mjs` and `zx scripts/0N-x.mjs`.
import { register } from 'tsx/esm/api';
import { fileURLToPath } from 'node:url';
import { realpathSync } from 'node:fs';

register();

/** Runs the step exported as `exportName` by `lib/<module>` and exits with its code. */
export async function runScript(scriptUrl, module, exportName) {
  const [{ runStep }, mod] = await Promise.all([import('../lib/runner.ts'), import(`../lib/${module}`)]);
  const self = realpathSync(fileURLToPath(scriptUrl));
  const at = process.argv.findIndex((a, i) => i > 0 && safeReal(a) === self);
  const args = at >= 0 ? process.argv.slice(at + 1) : process.argv.slice(2);
  process.exitCode = await runStep(mod[exportName], args);
}

function safeReal(p) {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}
