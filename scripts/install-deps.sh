#!/usr/bin/env bash
# Installs the Debian packages hardway and its tests use, when missing. Needs root (or sudo).
#   cfssl/cfssljson (golang-cfssl 1.2.0), openssl, etcd + etcdctl (for the etcd tests and the lab's
#   etcd cluster), OpenSSH server and client (the lab's hosts), iproute2 (namespaces, bridge),
#   haproxy (the lab load balancer), kmod and procps (what 02-prep inspects).
set -euo pipefail
packages=(golang-cfssl openssl etcd-server etcd-client openssh-server openssh-client iproute2 procps kmod haproxy util-linux ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
