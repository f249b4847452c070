#!/usr/bin/env bash
# The end-to-end tests against a kind cluster, for machines with a Docker engine: kind runs the
# control plane in containers, the operator image is built, loaded and installed with the chart,
# and `stratus dev up --attach` adds kwok and the simulated GPU node pools. The tests then use
# the cluster through STRATUS_E2E_KUBECONFIG and start no control plane of their own.
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
export KUBECONFIG="$state/kubeconfig"
kubectl="$cache/bin/kubernetes-$KUBERNETES_VERSION/kubectl"
helm="$cache/bin/helm-$HELM_VERSION/helm"

# The images, built and loaded into the kind nodes under the names the tests use (the same
# Dockerfiles `make images` builds with podman), and the chart installed with the operator's:
# the operator must start for real in the cluster.
image=stratus-operator:e2e
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/stratus/Chart.yaml")
docker build -t "$image" -t "ghcr.io/stratus-dev/stratus-operator:$app_version" "$root"
docker build -t localhost/stratus/train-example:dev -f "$root/examples/train/Dockerfile" "$root"
docker build -t localhost/stratus/model-server:dev -f "$root/examples/serve/Dockerfile" "$root"
"$kind" load docker-image "$image" "ghcr.io/stratus-dev/stratus-operator:$app_version" \
  localhost/stratus/train-example:dev localhost/stratus/model-server:dev --name "$name"
"$helm" install stratus "$root/charts/stratus" --namespace stratus-system --create-namespace \
  --set image.repository=stratus-operator --set image.tag=e2e --set image.pullPolicy=Never --wait
"$kubectl" -n stratus-system rollout status deployment/stratus-operator --timeout=120s
# The suite runs its own operator process (it kills and restarts it), so the in-cluster one
# stands down before the tests start.
"$kubectl" -n stratus-system scale deployment/stratus-operator --replicas=0

"$root/.venv/bin/stratus" dev up --attach "$state/kubeconfig" --state-dir "$state/kwok"
STRATUS_E2E_KUBECONFIG="$state/kubeconfig" "$root/.venv/bin/pytest" "$root/tests/e2e" "$@"
