#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing (idempotent, quiet when done):
# - prometheus, whose server and promtool the canary-analysis tests run for real;
# - containerd, runc, the CNI plugins, iptables and iproute2: the real node's runtime and network;
# - podman, buildah, skopeo and debootstrap: the project's images, built without a registry.
# - chromium and chromium-driver: the dashboard's browser test (selenium, headless).
set -euo pipefail

# command (or file) that shows the package is there -> Debian package
declare -A packages=(
  [prometheus]=prometheus
  [containerd]=containerd
  [runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [iptables]=iptables
  [ip]=iproute2
  [nsenter]=util-linux
  [podman]=podman
  [buildah]=buildah
  [skopeo]=skopeo
  [debootstrap]=debootstrap
  [chromium]=chromium
  [chromedriver]=chromium-driver
)
missing=()
for probe in "${!packages[@]}"; do
  if [[ $probe == /* ]]; then [ -e "$probe" ] && continue
  else command -v "$probe" >/dev/null && continue
  fi
  missing+=("${packages[$probe]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
