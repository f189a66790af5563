/**
 * Rendering the two templates: pure functions from data to text, through the shared handlebars
 * renderer (lib/render.ts: `noEscape`, `strict`, helpers that refuse missing values).
 *
 * `strict` does not catch a missing value inside `#each` or a helper argument (MISSION.md §6),
 * so every value is checked here before rendering, and the rendered YAML is parsed back and
 * compared with the document that was meant: a broken template fails here, not on a controller.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isDeepStrictEqual } from 'node:util';
import { render, TEMPLATES_DIR } from '../render.ts';
import { sha256 } from '../fsutil.ts';
import { ENCRYPTION_PROVIDERS, type EncryptionProvider } from '../inventory.ts';

export const KUBECONFIG_TEMPLATE = 'kubeconfig.yaml.hbs';
export const ENCRYPTION_TEMPLATE = 'encryption-config.yaml.hbs';

export interface Template {
  /** Under templates/, e.g. "kubeconfig.yaml.hbs". */
  readonly file: string;
  /** Repository-relative, e.g. "templates/kubeconfig.yaml.hbs": named in each rendered file's header. */
  readonly name: string;
  /** Recorded with each kubeconfig's inputs: a changed template is a reason to rewrite. */
  readonly sha256: string;
}

export function loadTemplate(file: string): Template {
  const text = readFileSync(join(TEMPLATES_DIR, file), 'utf8');
  return { file, name: `templates/${file}`, sha256: sha256(text) };
}

function nonEmpty(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') throw new Error(`template value ${what} is ${v === '' ? 'empty' : `not a string (${typeof v})`}`);
  return v;
}

function checkHeader(header: readonly string[]): void {
  if (header.length === 0) throw new Error('a generated file needs a header');
  for (const line of header) if (typeof line !== 'string' || /[\r\n]/.test(line)) throw new Error(`header line ${JSON.stringify(line)} must be a single line`);
}

function checkPem(pem: string, what: string, label: RegExp): void {
  if (!label.test(pem)) throw new Error(`${what} is not a PEM block of the expected kind`);
}

function checkRoundTrip(text: string, expected: unknown, template: Template): void {
  const parsed: unknown = parseYaml(text);
  if (!isDeepStrictEqual(parsed, expected)) {
    throw new Error(`${template.name} rendered YAML that does not parse back to the intended document (was the template edited?)`);
  }
}

export interface KubeconfigData {
  /** Comment lines (without "# ") at the top of the file. */
  readonly header: readonly string[];
  readonly cluster: string;
  readonly server: string;
  readonly user: string;
  readonly context: string;
  /** PEM text; embedded base64-encoded, as `kubectl config set-cluster --embed-certs` does. */
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** Renders one kubeconfig. Deterministic: the same data gives the same bytes. */
export function renderKubeconfig(template: Template, data: KubeconfigData): string {
  checkHeader(data.header);
  for (const k of ['cluster', 'server', 'user', 'context', 'caPem', 'certPem', 'keyPem'] as const) nonEmpty(data[k], k);
  if (!/^https:\/\/[^/\s]+:\d+$/.test(data.server)) throw new Error(`server "${data.server}" is not an https URL with a port`);
  checkPem(data.caPem, 'the CA certificate', /^-----BEGIN CERTIFICATE-----/m);
  checkPem(data.certPem, 'the client certificate', /^-----BEGIN CERTIFICATE-----/m);
  checkPem(data.keyPem, 'the client key', /^-----BEGIN [A-Z ]*PRIVATE KEY-----/m);
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const text = render(template.file, {
    header: [...data.header],
    cluster: data.cluster,
    server: data.server,
    user: data.user,
    context: data.context,
    caData: b64(data.caPem),
    certData: b64(data.certPem),
    keyData: b64(data.keyPem),
  });
  checkRoundTrip(
    text,
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: data.cluster, cluster: { server: data.server, 'certificate-authority-data': b64(data.caPem) } }],
      users: [{ name: data.user, user: { 'client-certificate-data': b64(data.certPem), 'client-key-data': b64(data.keyPem) } }],
      contexts: [{ name: data.context, context: { cluster: data.cluster, user: data.user } }],
      'current-context': data.context,
      preferences: {},
    },
    template,
  );
  return text;
}

export interface EncryptionKey {
  readonly name: string;
  /** base64 of the raw key bytes, as kube-apiserver expects. */
  readonly secret: string;
}

export interface ProviderKeys {
  readonly type: EncryptionProvider;
  /** The first key of the first provider encrypts; every key decrypts. */
  readonly keys: readonly EncryptionKey[];
}

export interface EncryptionData {
  readonly header: readonly string[];
  /** In order; `identity: {}` is always appended last by the template. */
  readonly providers: readonly ProviderKeys[];
}

/** Renders the EncryptionConfiguration. Deterministic. */
export function renderEncryptionConfig(template: Template, data: EncryptionData): string {
  checkHeader(data.header);
  if (data.providers.length === 0) throw new Error('an encryption config needs at least one provider with a key');
  for (const p of data.providers) {
    if (!(ENCRYPTION_PROVIDERS as readonly string[]).includes(p.type)) throw new Error(`unknown encryption provider "${String(p.type)}"`);
    if (p.keys.length === 0) throw new Error(`provider ${p.type} has no keys`);
    for (const k of p.keys) {
      nonEmpty(k.name, 'key name');
      nonEmpty(k.secret, `secret of ${k.name}`);
    }
  }
  const text = render(template.file, { header: [...data.header], providers: data.providers.map((p) => ({ type: p.type, keys: p.keys.map((k) => ({ ...k })) })) });
  checkRoundTrip(
    text,
    {
      apiVersion: 'apiserver.config.k8s.io/v1',
      kind: 'EncryptionConfiguration',
      resources: [
        {
          resources: ['secrets'],
          providers: [
            ...data.providers.map((p) => ({ [p.type]: { keys: p.keys.map((k) => ({ name: k.name, secret: k.secret })) } })),
            { identity: {} },
          ],
        },
      ],
    },
    template,
  );
  return text;
}
