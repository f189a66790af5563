/**
 * Which Ubuntu image to boot: the newest LTS release Canonical (owner 099720109477) publishes for
 * the instance type's architecture, newest build first; or the AMI the inventory pins.
 */
import type { Image } from '@aws-sdk/client-ec2';

/** Canonical's AWS account: only its images are trusted as "Ubuntu". */
export const CANONICAL_OWNER = '099720109477';

/** EC2 architecture (`x86_64`, `arm64`) to Ubuntu's name for it (`amd64`, `arm64`). */
export function ubuntuArch(ec2Arch: string): 'amd64' | 'arm64' {
  return ec2Arch === 'arm64' ? 'arm64' : 'amd64';
}

/** The DescribeImages name filter for Ubuntu server images of one architecture. */
export function ubuntuNameFilter(ec2Arch: string): string {
  return `ubuntu/images/hvm-ssd*/ubuntu-*-${ubuntuArch(ec2Arch)}-server-*`;
}

const NAME = /^ubuntu\/images\/hvm-ssd(?:-gp3)?\/ubuntu-([a-z]+)-(\d\d)\.(\d\d)-(amd64|arm64)-server-(\d{8}(?:\.\d+)?)$/;

/** Parses a Canonical image name; undefined for anything that is not an LTS server build. */
export function ltsRelease(name: string): { codename: string; version: string; build: string; arch: string } | undefined {
  const m = NAME.exec(name);
  if (!m) return undefined;
  const [, codename, yy, mm, arch, build] = m as unknown as [string, string, string, string, string, string];
  // LTS releases come out in April of even years: 20.04, 22.04, 24.04, ...
  if (mm !== '04' || Number(yy) % 2 !== 0) return undefined;
  return { codename, version: `${yy}.${mm}`, build, arch };
}

/** Newest LTS version first, then newest build; only available images owned by Canonical. */
export function pickUbuntuLts(images: readonly Image[], ec2Arch: string): Image | undefined {
  const arch = ubuntuArch(ec2Arch);
  const candidates = images
    .filter((i) => i.OwnerId === CANONICAL_OWNER && (i.State === undefined || i.State === 'available') && i.Architecture === ec2Arch)
    .map((i) => ({ image: i, rel: ltsRelease(i.Name ?? '') }))
    .filter((c): c is { image: Image; rel: NonNullable<ReturnType<typeof ltsRelease>> } => c.rel !== undefined && c.rel.arch === arch);
  candidates.sort((a, b) => b.rel.version.localeCompare(a.rel.version) || b.rel.build.localeCompare(a.rel.build) || (b.image.CreationDate ?? '').localeCompare(a.image.CreationDate ?? ''));
  return candidates[0]?.image;
}
