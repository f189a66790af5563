/** File writes that never leave a half-written file behind. */
import { openSync, writeSync, fsyncSync, closeSync, renameSync, unlinkSync, mkdirSync, chmodSync, readFileSync, existsSync } from 'node:fs';
import { dirname, basename, join, relative, isAbsolute } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';

/**
 * Writes `data` to a temp file in the same directory with `mode` from the start, fsyncs it, then
 * renames it over `path`. Readers see the old file or the new one, never a torn one; a private
 * key is never readable by others, not even for a moment. `durable: false` skips the fsync, for
 * files that are regenerated anyway when lost (rendered templates, transcripts): the rename still
 * makes them all-or-nothing for a killed process.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644, durable = true): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    if (durable) fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  chmodSync(tmp, mode); // umask may have narrowed it
  renameSync(tmp, path);
}

/** Mode for private keys and anything that embeds one. */
export const SECRET_MODE = 0o600;
export const PUBLIC_MODE = 0o644;

export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256File(path: string): string {
  return sha256(readFileSync(path));
}

export function readIfExists(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

/** Writes only when the content differs, so an unchanged re-run keeps every byte and mtime. */
export function writeIfChanged(path: string, data: string, mode = 0o644): boolean {
  if (readIfExists(path) === data) return false;
  writeFileAtomic(path, data, mode);
  return true;
}

/** A path for messages: relative to the current directory when below it, else absolute. */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}
