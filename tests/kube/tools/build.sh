#!/usr/bin/env bash
# Build the upstream tools the Kubernetes-mode tests run (etcd, kube-apiserver, helm)
# from Go modules, once per machine, into $MESHLET_KUBE_TOOLS (default
# /var/cache/meshlet/kube-tools)/bin. Go builds only these test tools; meshlet is Python.
# The wrapper modules beside this script pin the versions (k8s.io/kubernetes cannot be
# `go install`ed: its go.mod replaces the staging modules; see engineering notes §A).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${MESHLET_KUBE_TOOLS:-/var/cache/meshlet/kube-tools}
HELM_VERSION=v3.19.5
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if ! [ -x "$GO" ]; then
  echo "kube-tools: no Go toolchain (looked on PATH and /usr/local/go/bin); install Go >= 1.26" >&2
  exit 1
fi
stamp=$( (cat "$here"/apiserver/go.mod "$here"/etcd/go.mod; echo "helm $HELM_VERSION") | sha256sum | cut -c1-16)
if [ "$(cat "$dest/stamp" 2>/dev/null)" = "$stamp" ] \
   && [ -x "$dest/bin/etcd" ] && [ -x "$dest/bin/kube-apiserver" ] && [ -x "$dest/bin/helm" ]; then
  exit 0
fi
mkdir -p "$dest/bin"
rm -f "$dest/stamp"
export GOFLAGS=-mod=mod
start=$(date +%s)
echo "kube-tools: building etcd, kube-apiserver and helm into $dest/bin (first time on a machine: several minutes)"
(cd "$here/etcd" && nice -n 10 "$GO" build -o "$dest/bin/etcd" go.etcd.io/etcd/server/v3)
(cd "$here/apiserver" && nice -n 10 "$GO" build -o "$dest/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
GOFLAGS= GOBIN="$dest/bin" nice -n 10 "$GO" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "$stamp" > "$dest/stamp"
echo "kube-tools: done in $(( $(date +%s) - start )) s"
