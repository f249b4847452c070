#!/usr/bin/env bash
# The end-to-end tests against a kind cluster, for machines with a Docker engine: kind runs the
# control plane in containers, and `stratus dev up --attach` adds kwok and the simulated GPU
# node pools to it. The tests then use it through STRATUS_E2E_KUBECONFIG and start nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../operator/stratus/devcluster/versions.env
. "$root/operator/stratus/devcluster/versions.env"
cache=${STRATUS_CACHE:-$HOME/.cache/stratus}
kind="$cache/bin/kind-$KIND_VERSION/kind"
state="$root/.stratus/kind"
name=${STRATUS_KIND_CLUSTER:-stratus-e2e}

command -v docker >/dev/null && docker info >/dev/null 2>&1 \
  || { echo "e2e-kind: needs a running Docker engine; use 'make test' for the local control plane" >&2; exit 2; }
if [ ! -x "$kind" ]; then
  echo "building kind $KIND_VERSION into $(dirname "$kind")"
  GOBIN="$(dirname "$kind")" CGO_ENABLED=0 GOTOOLCHAIN=local go install "sigs.k8s.io/kind@$KIND_VERSION"
fi

mkdir -p "$state"
cleanup() {
  "$root/.venv/bin/stratus" dev down --state-dir "$state/kwok" || true
  "$kind" delete cluster --name "$name" || true
}
trap cleanup EXIT
"$kind" create cluster --name "$name" --image "$KIND_NODE_IMAGE" \
  --kubeconfig "$state/kubeconfig" --wait 180s
"$root/.venv/bin/stratus" dev up --attach "$state/kubeconfig" --state-dir "$state/kwok"
STRATUS_E2E_KUBECONFIG="$state/kubeconfig" "$root/.venv/bin/pytest" "$root/tests/e2e" "$@"
