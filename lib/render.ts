/**
 * Renders the handlebars templates under `templates/`. Rendering is a pure function from data
 * to text. Two guards against handlebars' defaults (MISSION.md §6): nothing is HTML-escaped
 * (`noEscape`), and a missing value is an error (`strict`, plus helpers that throw on undefined,
 * since strict mode does not look inside helper arguments).
 */
import Handlebars from 'handlebars';
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const TEMPLATES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'templates');

const hb = Handlebars.create();

function defined(name: string, value: unknown): unknown {
  if (value === undefined || value === null) throw new Error(`template helper "${name}" got a missing value`);
  return value;
}

/** `{{json x}}`: x as JSON (strings quoted and escaped). */
hb.registerHelper('json', (value: unknown) => JSON.stringify(defined('json', value)));
/** `{{cnf x}}`: a value for an openssl config line; refuses characters the config format would reinterpret. */
hb.registerHelper('cnf', (value: unknown) => {
  const s = String(defined('cnf', value));
  if (/[\n\r$#\\"]/.test(s)) throw new Error(`value ${JSON.stringify(s)} cannot go into an openssl config line`);
  return s;
});
/** `{{join list ", "}}` */
hb.registerHelper('join', (list: unknown, sep: unknown) => {
  if (!Array.isArray(defined('join', list))) throw new Error('template helper "join" needs a list');
  return (list as unknown[]).join(typeof sep === 'string' ? sep : ', ');
});
/** `{{yamlStr x}}`: a YAML double-quoted scalar (JSON strings are valid YAML). */
hb.registerHelper('yamlStr', (value: unknown) => JSON.stringify(String(defined('yamlStr', value))));

let partialsLoaded = false;
function loadPartials(): void {
  if (partialsLoaded) return;
  for (const dir of readdirSync(TEMPLATES_DIR, { withFileTypes: true })) {
    if (!dir.isDirectory()) continue;
    for (const f of readdirSync(join(TEMPLATES_DIR, dir.name))) {
      // Files named _x.*.hbs are partials, used as {{> dir/x}}.
      if (f.startsWith('_') && f.endsWith('.hbs')) {
        hb.registerPartial(`${dir.name}/${f.slice(1).replace(/\..*$/, '')}`, readFileSync(join(TEMPLATES_DIR, dir.name, f), 'utf8'));
      }
    }
  }
  partialsLoaded = true;
}

const compiled = new Map<string, Handlebars.TemplateDelegate>();

/** Renders `templates/<name>` with `data`; throws naming the template when a value is missing. */
export function render(name: string, data: object): string {
  loadPartials();
  let tpl = compiled.get(name);
  if (!tpl) {
    const source = readFileSync(join(TEMPLATES_DIR, name), 'utf8');
    tpl = hb.compile(source, { noEscape: true, strict: true });
    compiled.set(name, tpl);
  }
  try {
    return tpl({ ...data, template: `templates/${name}` });
  } catch (e) {
    throw new Error(`rendering templates/${name}: ${(e as Error).message}`);
  }
}

/** Path of a template relative to the repository, for headers in generated files. */
export function templatePath(name: string): string {
  return relative(join(TEMPLATES_DIR, '..'), join(TEMPLATES_DIR, name));
}
