#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok) from the Go module proxy with the machine's Go, into a cache folder outside the
# repository. Rebuilds only when a pinned version (a go.mod/go.sum here) or the Go version changes.
# Prints the folder holding the binaries on its last line of stdout; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
k8s_version="$(awk '/^require k8s.io\/kubernetes/ {print $3}' "$here/kubernetes/go.mod")"
if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: Go is not installed; the local control plane is built with Go (https://go.dev/dl/ or your package manager)" >&2
  exit 2
fi
key="$( (go env GOVERSION; cat "$here"/*/go.mod "$here"/*/go.sum "$here"/pause/*.go "$here/build.sh") | sha256sum | cut -c1-12)"
cache_root="${SCRIPT_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/script-operator}/control-plane"
out="$cache_root/$k8s_version-$key"
if [ -f "$out/.complete" ]; then
  echo "control plane $k8s_version: cached in $out" >&2
  echo "$out"
  exit 0
fi
mkdir -p "$out/bin"
start=$(date +%s)
major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
build() { # name, module dir, ldflags, packages...
  local name="$1" dir="$2" ldflags="$3"; shift 3
  local t0; t0=$(date +%s)
  echo "building $name (first build takes minutes; later runs use the cache)..." >&2
  (cd "$here/$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out/bin/" "$@") >&2
  echo "built $name in $(( $(date +%s) - t0 ))s" >&2
}
build etcd etcd "" go.etcd.io/etcd/server/v3
mv -f "$out/bin/server" "$out/bin/etcd" # go names the binary after the module path: .../server/v3 -> server
build kwok kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=$(awk '/^require sigs.k8s.io\/kwok/ {print $3}' "$here/kwok/go.mod")" sigs.k8s.io/kwok/cmd/kwok
vf="-X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
vf="$vf -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version -X k8s.io/client-go/pkg/version.gitMajor=$major -X k8s.io/client-go/pkg/version.gitMinor=$minor"
build "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet" kubernetes "$vf" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
# The real node's sandbox ("pause") image: a tiny static program, since no registry is reachable.
build pause pause "" .
touch "$out/.complete"
echo "control plane $k8s_version built in $(( $(date +%s) - start ))s into $out" >&2
echo "$out"
