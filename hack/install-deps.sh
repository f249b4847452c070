#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing (idempotent, quiet when done):
# prometheus, whose server and promtool the canary-analysis tests run for real.
set -euo pipefail

missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
