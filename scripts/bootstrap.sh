#!/usr/bin/env bash
# Installs what hardway and its tests need, when missing, then exits. Safe to run again.
#   - Debian packages (needs root, or sudo): cfssl/cfssljson (golang-cfssl 1.2.0), openssl,
#     etcd + etcdctl (tests and the lab's etcd cluster), OpenSSH server and client (the lab's
#     hosts), iproute2 (namespaces, bridge), haproxy (the lab load balancer), kmod and procps
#     (what 02-prep inspects), socat conntrack ipset (what 02-prep expects on workers; lab hosts
#     share this machine's /usr, so they are installed here).
#   - npm packages from package-lock.json (npm ci), when node_modules is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(golang-cfssl openssl etcd-server etcd-client openssh-server openssh-client iproute2 procps kmod
  haproxy util-linux ca-certificates socat conntrack ipset)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"
  else
    echo "bootstrap: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    echo "bootstrap: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the lock file changed since the last install (its hash is kept in node_modules).
stamp=node_modules/.hardway-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi
