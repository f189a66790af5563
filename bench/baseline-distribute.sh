#!/usr/bin/env bash
# The hand-built baseline for bench/distribute.mjs: the files of 05-distribute installed the way a
# person following Kubernetes the Hard Way does it. For each host in turn: `scp` its files to
# /tmp, then one `ssh` that moves them into place with `install -D -m MODE -o root -g root` and
# removes the copies. Real scp and ssh, with the workspace's key and known_hosts and strict host
# key checking (better than the guide, which never checks). No parallelism, no checksums, no
# skipping what is already there, no verification: exactly what the guide does.
#
#   bench/baseline-distribute.sh FILE_LIST SOURCE_DIR SSH_KEY KNOWN_HOSTS
#
# FILE_LIST has one file per line, "host address source-name remote-path mode", grouped by host,
# as bench/distribute.mjs writes it from the manifest; SOURCE_DIR holds the source files under
# unique flat names (the guide's working directory: ca.pem, worker-0-key.pem, ...).
set -euo pipefail

LIST=$(realpath "${1:?usage: baseline-distribute.sh FILE_LIST SOURCE_DIR SSH_KEY KNOWN_HOSTS}")
SRC=${2:?usage: baseline-distribute.sh FILE_LIST SOURCE_DIR SSH_KEY KNOWN_HOSTS}
KEY=${3:?usage: baseline-distribute.sh FILE_LIST SOURCE_DIR SSH_KEY KNOWN_HOSTS}
KNOWN=${4:?usage: baseline-distribute.sh FILE_LIST SOURCE_DIR SSH_KEY KNOWN_HOSTS}
OPTS=(-i "$KEY" -o UserKnownHostsFile="$KNOWN" -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR)

cd "$SRC"
for host in $(awk '{ print $1 }' "$LIST" | uniq); do
  addr=$(awk -v h="$host" '$1 == h { print $2; exit }' "$LIST")
  files=$(awk -v h="$host" '$1 == h { print $3 }' "$LIST")
  # shellcheck disable=SC2086
  scp -q "${OPTS[@]}" $files "root@${addr}:/tmp/"
  moves=$(awk -v h="$host" '$1 == h { printf "install -D -m %s -o root -g root /tmp/%s %s && ", $5, $3, $4 }' "$LIST")
  # shellcheck disable=SC2086
  ssh "${OPTS[@]}" "root@${addr}" "${moves}cd /tmp && rm -f $(echo $files | tr ' ' '\n' | sort -u | tr '\n' ' ')"
done
