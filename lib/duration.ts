/** Go-style durations ("8760h", "90m", "1h30m"), the form cfssl's ca-config also uses. */

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000 };

/** Milliseconds for a duration string, or null when it is not one (or is zero). */
export function parseDuration(text: string): number | null {
  if (!/^(\d+[hms])+$/.test(text)) return null;
  let ms = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)([hms])/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return ms > 0 ? ms : null;
}

/** Whole hours, rounded down, at least 1: cfssl profiles and openssl both want coarse units. */
export function formatHours(ms: number): string {
  return `${Math.max(1, Math.floor(ms / 3_600_000))}h`;
}
