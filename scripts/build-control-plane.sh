#!/usr/bin/env bash
# Build the real Kubernetes control plane the tests run (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd, kwok) from their Go modules, once, into a cache directory keyed by the pinned versions.
# A second run finds every binary there and returns at once. Prints the directory on its last line.
#   NEUROSCALE_CONTROL_PLANE_CACHE  where the versioned directories live (default ~/.cache/neuroscale/control-plane)
set -euo pipefail
cd "$(dirname "$0")/.."

# The pins: tests/controlplane/go.mod holds Kubernetes and etcd (with go.sum); kwok is its own module.
KUBERNETES=v1.35.4
ETCD=v3.6.5
KWOK=v0.8.0
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)
RECIPE=2  # bump when the build flags change, so a cache built the old way is not reused

root="${NEUROSCALE_CONTROL_PLANE_CACHE:-$HOME/.cache/neuroscale/control-plane}"
dir="$root/kubernetes-$KUBERNETES-etcd-$ETCD-kwok-$KWOK-r$RECIPE"
mkdir -p "$root"
# One build at a time (parallel test sessions may all ask); the others wait, then find the cache filled.
exec 9>"$root/.build.lock"
flock 9

missing=()
for b in "${BINARIES[@]}"; do [ -x "$dir/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ] && [ -s "$dir/kwok-stages.yaml" ]; then
  echo "control plane: cached in $dir"
  echo "$dir"
  exit 0
fi

command -v go >/dev/null || { echo "build-control-plane: the Go toolchain is needed to build ${missing[*]}" >&2; exit 1; }
mkdir -p "$dir"
start=$(date +%s)
# Static, stripped binaries; -trimpath keeps the build independent of where the checkout is.
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath"
declare -A package=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [etcd]=go.etcd.io/etcd/server/v3
)
# A release build stamps its version into both version packages (what /version, `kubectl version` and Helm's
# kubeVersion check read); a plain `go build` would report v0.0.0-master.
minor=${KUBERNETES#v1.}; minor=${minor%%.*}
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $pkg.gitVersion=$KUBERNETES -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for b in "${missing[@]}"; do
  t=$(date +%s)
  if [ "$b" = kwok ]; then
    # kwok's own go.mod pins its client libraries; `go install pkg@version` builds it exactly as released.
    GOFLAGS=-trimpath GOBIN="$dir" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK"
  else
    (cd tests/controlplane && go build -ldflags "-s -w$version_flags" -o "$dir/$b.partial" "${package[$b]}")
    mv "$dir/$b.partial" "$dir/$b"
  fi
  echo "control plane: built $b in $(( $(date +%s) - t )) s"
done
# kwok acts only through Stage objects: take the released "fast" stages (nodes Ready with lease heartbeats, pods
# Running/Ready once scheduled, deleted pods removed) from the same kwok module.
stages="$(GOFLAGS= go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK/kustomize/stage"
[ -d "$stages" ] || GOFLAGS= go mod download "sigs.k8s.io/kwok@$KWOK"
for f in "$stages"/node/fast/*.yaml "$stages"/node/heartbeat-with-lease/*.yaml "$stages"/pod/fast/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || { echo "---"; cat "$f"; }
done > "$dir/kwok-stages.yaml"

echo "control plane: built ${missing[*]:-kwok stages} in $(( $(date +%s) - start )) s into $dir"
echo "$dir"
