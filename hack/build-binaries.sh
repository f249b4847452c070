#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules, once, into a cache outside the repo:
#   ${STRATUS_CACHE:-$HOME/.cache/stratus}/bin/<component>-<version>/
# `hack/build-binaries.sh peer` builds instead the Kubeflow training operator that the benchmarks
# compare against, with the PyTorchJob CRD from the same module; `hack/build-binaries.sh lint`
# only what `make lint` runs: helm, to render the chart, and kube-score, to scan it.
# A later run finds them and builds nothing. Binaries of the pinned version in $STRATUS_BIN_DIR
# or $KUBEBUILDER_ASSETS (envtest's kube-apiserver, etcd, kubectl) are used as they are and not
# built; stratus.devcluster.binaries decides, by asking each its version. Each binary is linked
# under a temporary name and renamed into place only when complete, so an interrupted build never
# leaves one that looks done.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
versions="$here/../operator/stratus/devcluster/versions.env"
# shellcheck source=../operator/stratus/devcluster/versions.env
. "$versions"
cache=${STRATUS_CACHE:-$HOME/.cache/stratus}
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
start=$(date +%s)

log() { printf '[build-binaries %3ds] %s\n' "$(( $(date +%s) - start ))" "$*"; }

# The binaries neither cached nor reusable, one per line (the module is standard library only:
# no venv needed).
todo=$(PYTHONPATH="$here/../operator" "${PYTHON:-python3}" -m stratus.devcluster.binaries \
  missing "${1:-all}")

# build COMPONENT VERSION LDFLAGS PKG... : builds each main package into the component's folder.
build() {
  local component=$1 version=$2 ldflags=$3; shift 3
  local dir="$cache/bin/$component-$version" missing=() pkg
  for pkg in "$@"; do
    if grep -qxF "$(basename "$pkg")" <<<"$todo"; then missing+=("$pkg"); fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "$component $version: cached in $dir or reused"
    return
  fi
  log "$component $version: building ${missing[*]##*/} (takes minutes on a small machine)"
  mkdir -p "$dir"
  local tmp
  tmp=$(mktemp -d "$dir/.build.XXXXXX")
  trap 'rm -rf "$tmp"; trap - RETURN' RETURN
  (cd "$here/tools/$component" && go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/" "${missing[@]}")
  for pkg in "${missing[@]}"; do mv -f "$tmp/$(basename "$pkg")" "$dir/"; done
  log "$component $version: done"
}

k8s_minor=${KUBERNETES_VERSION#v1.}; k8s_minor=${k8s_minor%%.*}
k8s_ldflags="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$k8s_minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"

if [ "${1:-}" = peer ]; then
  build training-operator "$TRAINING_OPERATOR_VERSION" "" \
    github.com/kubeflow/training-operator/cmd/training-operator.v1
  crd=$(cd "$here/tools/training-operator" && go list -m -f '{{.Dir}}' github.com/kubeflow/training-operator)
  cp "$crd/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" \
    "$cache/bin/training-operator-$TRAINING_OPERATOR_VERSION/pytorchjobs-crd.yaml"
  log "training operator ready (total $(( $(date +%s) - start ))s)"
  exit 0
fi

lint_tools() {
  build helm "$HELM_VERSION" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    helm.sh/helm/v3/cmd/helm
  build kube-score "$KUBE_SCORE_VERSION" "-X main.version=$KUBE_SCORE_VERSION" \
    github.com/zegl/kube-score/cmd/kube-score
}

if [ "${1:-}" = lint ]; then
  lint_tools
  exit 0
fi

build etcd "$ETCD_VERSION" "" stratus.dev/hack/tools/etcd
build kwok "$KWOK_VERSION" "" sigs.k8s.io/kwok/cmd/kwok
lint_tools
build kubernetes "$KUBERNETES_VERSION" "$k8s_ldflags" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
build metrics-server "$METRICS_SERVER_VERSION" \
  "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
  sigs.k8s.io/metrics-server/cmd/metrics-server
build seaweedfs "$SEAWEEDFS_VERSION" \
  "-X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=${SEAWEEDFS_VERSION##*-}" \
  github.com/seaweedfs/seaweedfs/weed

# Kueue reads its metrics serving certificate from a fixed /etc/kueue/metrics/certs unless it
# manages certificates itself (which needs its webhook configurations and conversion webhooks
# in the cluster). Its main package (one main.go) is built from a copy with that one line
# changed to read the directory from KUEUE_METRICS_CERT_DIR, that path still the default: a
# build overlay places the copy in this repository's tools module (Go replaces no file of the
# module cache), and the build stops if the line is not there.
kueue_overlay() {
  local out=$1 src line='metricsCertPath := "/etc/kueue/metrics/certs"'
  src=$(cd "$here/tools/kueue" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)/cmd/kueue/main.go
  grep -qF "$line" "$src" || { log "kueue: $line not found in $src"; exit 1; }
  sed "s|$line|metricsCertPath := func() string { if d := os.Getenv(\"KUEUE_METRICS_CERT_DIR\"); d != \"\" { return d }; return \"/etc/kueue/metrics/certs\" }()|" \
    "$src" >"$out/main.go"
  printf '{"Replace": {"%s": "%s"}}\n' "$here/tools/kueue/kueue/main.go" "$out/main.go" \
    >"$out/overlay.json"
}
if grep -qxF kueue <<<"$todo"; then
  overlay=$(mktemp -d)
  kueue_overlay "$overlay"
  GOFLAGS="$GOFLAGS -overlay=$overlay/overlay.json" build kueue "$KUEUE_VERSION" \
    "-X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION" ./kueue
  rm -rf "$overlay"
else
  build kueue "$KUEUE_VERSION" "" ./kueue
fi

log "all binaries ready, cached under $cache/bin or reused (total $(( $(date +%s) - start ))s)"
