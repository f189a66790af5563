/**
 * The encryption config's keys: generate once, read back, rotate, retire. Pure apart from the
 * random source, which callers may replace (tests).
 *
 * The key is the one thing in the workspace that cannot be re-made: every Secret in etcd is
 * encrypted with it, so a new key would make them all unreadable. Nothing here ever replaces a
 * key; rotation only adds one in front (it encrypts new writes) and keeps the old ones after it
 * (they still decrypt what was written before).
 */
import { randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { ENCRYPTION_PROVIDERS, type EncryptionProvider } from '../inventory.ts';
import type { EncryptionKey, ProviderKeys } from './render.ts';

/** Bytes of a generated key: what secretbox requires, and AES-256 for aescbc / aesgcm. */
export const KEY_BYTES = 32;

export type RandomBytes = (n: number) => Buffer;

/** The key lists of an encryption config, in order; `identity` (always last) is implied. */
export interface EncryptionKeys {
  readonly providers: readonly ProviderKeys[];
}

export function newKey(name: string, random: RandomBytes = randomBytes): EncryptionKey {
  return { name, secret: random(KEY_BYTES).toString('base64') };
}

/** The very first config of a cluster: one provider, one key. */
export function initialKeys(provider: EncryptionProvider, random: RandomBytes = randomBytes): EncryptionKeys {
  return { providers: [{ type: provider, keys: [newKey('key-1', random)] }] };
}

/** The provider and key that encrypt new writes. */
export function activeKey(keys: EncryptionKeys): { type: EncryptionProvider; key: EncryptionKey } {
  const first = keys.providers[0]!;
  return { type: first.type, key: first.keys[0]! };
}

export function allKeyNames(keys: EncryptionKeys): string[] {
  return keys.providers.flatMap((p) => p.keys.map((k) => k.name));
}

/** "key-<n+1>" where n is the highest "key-<n>" in use (or the number of keys). */
export function nextKeyName(keys: EncryptionKeys): string {
  const names = allKeyNames(keys);
  const numbers = names.map((n) => /^key-(\d+)$/.exec(n)).filter((m) => m !== null).map((m) => Number(m[1]));
  return `key-${Math.max(names.length, ...numbers) + 1}`;
}

/**
 * Adds a new key in front. With the same provider it goes first in that provider's key list;
 * when the inventory names another provider, a new provider entry goes first and the old one
 * stays after it for decryption.
 */
export function rotate(keys: EncryptionKeys, provider: EncryptionProvider, random: RandomBytes = randomBytes): { keys: EncryptionKeys; added: EncryptionKey; previous: EncryptionKey } {
  const added = newKey(nextKeyName(keys), random);
  const previous = activeKey(keys).key;
  const [first, ...rest] = keys.providers;
  const providers = first!.type === provider ? [{ type: provider, keys: [added, ...first!.keys] }, ...rest] : [{ type: provider, keys: [added] }, ...keys.providers];
  return { keys: { providers }, added, previous };
}

/** Keeps only the key that encrypts; returns the names of the keys removed. */
export function dropOldKeys(keys: EncryptionKeys): { keys: EncryptionKeys; dropped: string[] } {
  const { type, key } = activeKey(keys);
  return { keys: { providers: [{ type, keys: [key] }] }, dropped: allKeyNames(keys).filter((n) => n !== key.name) };
}

/** Valid raw key lengths per provider, as kube-apiserver checks them. */
const KEY_LENGTHS: Record<EncryptionProvider, readonly number[]> = { secretbox: [32], aescbc: [16, 24, 32], aesgcm: [16, 24, 32] };

/**
 * Reads an encryption config this step wrote (or one restored from a controller). Throws an
 * Error that says what is wrong; never "repairs" anything, since a guessed repair could lose a key.
 */
export function parseEncryptionConfig(text: string): EncryptionKeys {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new Error(`is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const obj = (v: unknown, what: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} should be a mapping`);
    return v as Record<string, unknown>;
  };
  const arr = (v: unknown, what: string): unknown[] => {
    if (!Array.isArray(v)) throw new Error(`${what} should be a list`);
    return v;
  };
  const top = obj(doc, 'the document');
  if (top.apiVersion !== 'apiserver.config.k8s.io/v1') throw new Error(`apiVersion is ${JSON.stringify(top.apiVersion)}, expected "apiserver.config.k8s.io/v1"`);
  if (top.kind !== 'EncryptionConfiguration') throw new Error(`kind is ${JSON.stringify(top.kind)}, expected "EncryptionConfiguration"`);
  const resources = arr(top.resources, 'resources');
  if (resources.length !== 1) throw new Error(`resources has ${resources.length} entries; this tool manages exactly one, for secrets`);
  const entry = obj(resources[0], 'resources[0]');
  const kinds = arr(entry.resources, 'resources[0].resources');
  if (kinds.length !== 1 || kinds[0] !== 'secrets') throw new Error(`resources[0].resources is ${JSON.stringify(kinds)}, expected ["secrets"]`);
  const list = arr(entry.providers, 'resources[0].providers');
  const last = list[list.length - 1];
  if (list.length < 2 || !isDeepIdentity(last)) throw new Error('resources[0].providers must end with "identity: {}" after at least one keyed provider');
  const seen = new Set<string>();
  const providers = list.slice(0, -1).map((p, i): ProviderKeys => {
    const where = `resources[0].providers[${i}]`;
    const m = obj(p, where);
    const names = Object.keys(m);
    const type = names[0] as EncryptionProvider;
    if (names.length !== 1 || !(ENCRYPTION_PROVIDERS as readonly string[]).includes(type)) {
      throw new Error(`${where} is ${JSON.stringify(names)}; expected one of ${ENCRYPTION_PROVIDERS.join(', ')} (identity only last)`);
    }
    const keys = arr(obj(m[type], `${where}.${type}`).keys, `${where}.${type}.keys`);
    if (keys.length === 0) throw new Error(`${where}.${type}.keys is empty`);
    return {
      type,
      keys: keys.map((k, j): EncryptionKey => {
        const kw = `${where}.${type}.keys[${j}]`;
        const km = obj(k, kw);
        if (typeof km.name !== 'string' || km.name === '') throw new Error(`${kw}.name is missing`);
        if (seen.has(km.name)) throw new Error(`${kw}.name "${km.name}" is used twice`);
        seen.add(km.name);
        if (typeof km.secret !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(km.secret)) throw new Error(`${kw}.secret is not base64`);
        const bytes = Buffer.from(km.secret, 'base64').length;
        if (!KEY_LENGTHS[type].includes(bytes)) throw new Error(`${kw}.secret decodes to ${bytes} bytes; ${type} needs ${KEY_LENGTHS[type].join(' or ')}`);
        return { name: km.name, secret: km.secret };
      }),
    };
  });
  return { providers };
}

function isDeepIdentity(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const keys = Object.keys(v);
  const inner = (v as Record<string, unknown>).identity;
  return keys.length === 1 && keys[0] === 'identity' && (inner === null || (typeof inner === 'object' && !Array.isArray(inner) && Object.keys(inner).length === 0));
}
