/** IPv4 address and CIDR arithmetic: just what the inventory and the plan need. */

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  readonly base: number;
  readonly prefix: number;
  /** The CIDR as written back in canonical form, e.g. `10.32.0.0/24`. */
  readonly text: string;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Parses dotted-quad IPv4; returns null when it is not one (no leading zeros, no extras). */
export function parseIp(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return null;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

/** Parses `a.b.c.d/n` and insists the address is the network address (no host bits set). */
export function parseCidr(text: string): Cidr | string {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!m) return 'expected an IPv4 CIDR like 10.240.0.0/24';
  const ip = parseIp(m[1]!);
  const prefix = Number(m[2]);
  if (ip === null) return `"${m[1]}" is not an IPv4 address`;
  if (prefix > 32) return 'prefix length must be 0-32';
  const size = 2 ** (32 - prefix);
  if (ip % size !== 0) return `host bits are set; the network address is ${formatIp(ip - (ip % size))}/${prefix}`;
  return { base: ip, prefix, text: `${formatIp(ip)}/${prefix}` };
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return ip >= c.base && ip < c.base + cidrSize(c);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}

/** The first usable host address: the `kubernetes` Service IP for a service CIDR. */
export function firstHost(c: Cidr): string {
  if (c.prefix >= 31) return formatIp(c.base);
  return formatIp(c.base + 1);
}

/** True when `ip` is the network or broadcast address of `c` (unusable for a host). */
export function isNetworkOrBroadcast(c: Cidr, ip: number): boolean {
  if (c.prefix >= 31) return false;
  return ip === c.base || ip === c.base + cidrSize(c) - 1;
}
