#!/usr/bin/env bash
# The hand-built baseline for bench/pki.mjs: the cluster PKI of MISSION.md §2 signed the way a
# person following Kubernetes the Hard Way types it. One heredoc CSR per certificate, one
# `cfssl gencert ... | cfssljson -bare NAME` after another, openssl for the service-account pair.
# No checks, no records, no parallelism: exactly what the guide does.
#
#   bench/baseline-pki.sh OUT_DIR rsa|ecdsa HOSTS_FILE
#
# HOSTS_FILE has one host per line, "role name private-ip" (role: lb, controller, worker), as
# bench/pki.mjs writes it from the same inventory it gives 03-pki. The Service IP (10.32.0.1) and
# the cluster domain (cluster.local) are the inventory defaults the benchmark uses.
set -euo pipefail

OUT=${1:?usage: baseline-pki.sh OUT_DIR rsa|ecdsa HOSTS_FILE}
ALGO=${2:?usage: baseline-pki.sh OUT_DIR rsa|ecdsa HOSTS_FILE}
HOSTS=${3:?usage: baseline-pki.sh OUT_DIR rsa|ecdsa HOSTS_FILE}
HOSTS=$(realpath "$HOSTS")
case "$ALGO" in
  rsa) KEY='"algo": "rsa", "size": 2048'; KU='"digital signature", "key encipherment"' ;;
  ecdsa) KEY='"algo": "ecdsa", "size": 256'; KU='"digital signature"' ;;
  *) echo "ALGO must be rsa or ecdsa" >&2; exit 2 ;;
esac
SERVICE_IP=10.32.0.1
DOMAIN=cluster.local

mkdir -p "$OUT"
cd "$OUT"

LB_IP=$(awk '$1 == "lb" { print $3 }' "$HOSTS")
CONTROLLERS=$(awk '$1 == "controller" { print $2 }' "$HOSTS")
WORKERS=$(awk '$1 == "worker" { print $2 }' "$HOSTS")
ip_of() { awk -v n="$1" '$2 == n { print $3 }' "$HOSTS"; }

# --- The certificate authorities -------------------------------------------------------------

cat > ca-config.json <<EOF
{
  "signing": {
    "default": { "expiry": "8760h" },
    "profiles": {
      "client": { "usages": [${KU}, "client auth"], "expiry": "8760h" },
      "server": { "usages": [${KU}, "server auth"], "expiry": "8760h" },
      "server-client": { "usages": [${KU}, "server auth", "client auth"], "expiry": "8760h" }
    }
  }
}
EOF

for ca in kubernetes-ca etcd-ca front-proxy-ca; do
cat > ${ca}-csr.json <<EOF
{
  "CN": "${ca}",
  "key": { ${KEY} },
  "ca": { "expiry": "87600h" }
}
EOF
cfssl gencert -initca ${ca}-csr.json | cfssljson -bare ${ca}
done

# --- kubernetes-ca: the API server ------------------------------------------------------------

KUBERNETES_HOSTNAMES=kubernetes,kubernetes.default,kubernetes.default.svc,kubernetes.default.svc.${DOMAIN}
CONTROLLER_NAMES=$(echo ${CONTROLLERS} | tr ' ' ',')
CONTROLLER_IPS=$(for c in ${CONTROLLERS}; do ip_of "$c"; done | paste -sd, -)

cat > kube-apiserver-csr.json <<EOF
{
  "CN": "kube-apiserver",
  "key": { ${KEY} }
}
EOF
cfssl gencert \
  -ca=kubernetes-ca.pem \
  -ca-key=kubernetes-ca-key.pem \
  -config=ca-config.json \
  -hostname=${SERVICE_IP},${CONTROLLER_IPS},${LB_IP},127.0.0.1,${CONTROLLER_NAMES},${KUBERNETES_HOSTNAMES} \
  -profile=server \
  kube-apiserver-csr.json | cfssljson -bare kube-apiserver

cat > apiserver-kubelet-client-csr.json <<EOF
{
  "CN": "kube-apiserver-kubelet-client",
  "key": { ${KEY} },
  "names": [ { "O": "system:masters" } ]
}
EOF
cfssl gencert -ca=kubernetes-ca.pem -ca-key=kubernetes-ca-key.pem -config=ca-config.json \
  -profile=client apiserver-kubelet-client-csr.json | cfssljson -bare apiserver-kubelet-client

# --- kubernetes-ca: one kubelet certificate per worker ----------------------------------------

for instance in ${WORKERS}; do
cat > ${instance}-csr.json <<EOF
{
  "CN": "system:node:${instance}",
  "key": { ${KEY} },
  "names": [ { "O": "system:nodes" } ]
}
EOF
INTERNAL_IP=$(ip_of "${instance}")
cfssl gencert \
  -ca=kubernetes-ca.pem \
  -ca-key=kubernetes-ca-key.pem \
  -config=ca-config.json \
  -hostname=${instance},${INTERNAL_IP} \
  -profile=server-client \
  ${instance}-csr.json | cfssljson -bare ${instance}
done

# --- kubernetes-ca: the control plane clients and the admin -----------------------------------

cat > kube-controller-manager-csr.json <<EOF
{
  "CN": "system:kube-controller-manager",
  "key": { ${KEY} }
}
EOF
cfssl gencert -ca=kubernetes-ca.pem -ca-key=kubernetes-ca-key.pem -config=ca-config.json \
  -profile=client kube-controller-manager-csr.json | cfssljson -bare kube-controller-manager

cat > kube-scheduler-csr.json <<EOF
{
  "CN": "system:kube-scheduler",
  "key": { ${KEY} }
}
EOF
cfssl gencert -ca=kubernetes-ca.pem -ca-key=kubernetes-ca-key.pem -config=ca-config.json \
  -profile=client kube-scheduler-csr.json | cfssljson -bare kube-scheduler

cat > kube-proxy-csr.json <<EOF
{
  "CN": "system:kube-proxy",
  "key": { ${KEY} }
}
EOF
cfssl gencert -ca=kubernetes-ca.pem -ca-key=kubernetes-ca-key.pem -config=ca-config.json \
  -profile=client kube-proxy-csr.json | cfssljson -bare kube-proxy

cat > admin-csr.json <<EOF
{
  "CN": "admin",
  "key": { ${KEY} },
  "names": [ { "O": "system:masters" } ]
}
EOF
cfssl gencert -ca=kubernetes-ca.pem -ca-key=kubernetes-ca-key.pem -config=ca-config.json \
  -profile=client admin-csr.json | cfssljson -bare admin

# --- etcd-ca: server and peer certificates per controller, the API server's client ------------

for instance in ${CONTROLLERS}; do
INTERNAL_IP=$(ip_of "${instance}")
cat > etcd-server-${instance}-csr.json <<EOF
{
  "CN": "${instance}",
  "key": { ${KEY} }
}
EOF
cfssl gencert -ca=etcd-ca.pem -ca-key=etcd-ca-key.pem -config=ca-config.json \
  -hostname=${instance},localhost,${INTERNAL_IP},127.0.0.1 \
  -profile=server-client etcd-server-${instance}-csr.json | cfssljson -bare etcd-server-${instance}

cat > etcd-peer-${instance}-csr.json <<EOF
{
  "CN": "${instance}",
  "key": { ${KEY} }
}
EOF
cfssl gencert -ca=etcd-ca.pem -ca-key=etcd-ca-key.pem -config=ca-config.json \
  -hostname=${instance},${INTERNAL_IP} \
  -profile=server-client etcd-peer-${instance}-csr.json | cfssljson -bare etcd-peer-${instance}
done

cat > apiserver-etcd-client-csr.json <<EOF
{
  "CN": "kube-apiserver-etcd-client",
  "key": { ${KEY} }
}
EOF
cfssl gencert -ca=etcd-ca.pem -ca-key=etcd-ca-key.pem -config=ca-config.json \
  -profile=client apiserver-etcd-client-csr.json | cfssljson -bare apiserver-etcd-client

# --- front-proxy-ca ---------------------------------------------------------------------------

cat > front-proxy-client-csr.json <<EOF
{
  "CN": "front-proxy-client",
  "key": { ${KEY} }
}
EOF
cfssl gencert -ca=front-proxy-ca.pem -ca-key=front-proxy-ca-key.pem -config=ca-config.json \
  -profile=client front-proxy-client-csr.json | cfssljson -bare front-proxy-client

# --- The service-account key pair -------------------------------------------------------------

if [ "$ALGO" = rsa ]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
else
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key
fi
openssl pkey -in sa.key -pubout -out sa.pub
