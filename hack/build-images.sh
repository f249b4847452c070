#!/usr/bin/env bash
# The project's images, built locally with podman and no registry (`make images`):
#   localhost/stratus/pause:1                      the real node's sandbox image (hack/tools/pause)
#   ghcr.io/stratus-dev/stratus-operator:<appVersion>   the operator and model-staging image (Dockerfile)
#   localhost/stratus/train-example:dev            examples/train/Dockerfile
#   localhost/stratus/model-server:dev             examples/serve/Dockerfile
# Idempotent: an image is rebuilt only when its inputs changed (its Dockerfile, the files it
# COPYs, its base image's id), and saved as a docker-archive only when rebuilt. Everything lives
# outside the repository, under ${STRATUS_CACHE:-$HOME/.cache/stratus}/images/:
#   containers.conf            podman settings for this machine kind (see below)
#   base/debian-bookworm-minbase.tar   the debootstrapped rootfs, when there is no public base
#   pause/pause                the static pause binary (the pause image's build context)
#   <name>.tar, <name>.tar.inputs      docker-archive of each image and the inputs hash it holds
#   index.json                 [{"name", "tag", "archive", "hash"}, ...] for the real node
#   logs/<name>.log            the last build's output of each image
#   build-home/                a pip.conf and CA bundle for RUN steps, where egress has its own CA
# When STRATUS_STATE_DIR names a running local cluster (`make images` passes the default one,
# .stratus), rebuilt archives are also imported into its node's containerd (`ctr --address <sock> -n k8s.io images import --snapshotter=overlayfs
# <archive>`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${STRATUS_CACHE:-$HOME/.cache/stratus}/images"
base_tag="docker.io/library/debian:bookworm-slim"
label="stratus.dev/inputs"

say() { echo "images: $*"; }
die() { echo "images: error: $*" >&2; exit 1; }

for tool in podman debootstrap go python3 flock; do
  command -v "$tool" >/dev/null \
    || die "$tool is missing (install the Debian packages with: make deps, or hack/install-deps.sh)"
done
mkdir -p "$cache/logs" "$cache/base" "$cache/pause"
# One run at a time: a second waits for the first rather than racing it on the same archives.
exec 9>"$cache/.lock"
flock 9

# Root on these machines lacks CAP_SYS_RESOURCE, so podman's default rlimits cannot be set
# ("error setting rlimit type 7"); and no systemd runs, so cgroups are managed directly. A
# CONTAINERS_CONF of the caller's own wins; nothing under /etc is touched.
if [ -z "${CONTAINERS_CONF:-}" ] || [ "$CONTAINERS_CONF" = "$cache/containers.conf" ]; then
  conf="$cache/containers.conf"
  cat >"$conf.tmp" <<'EOF'
# Written by hack/build-images.sh.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  mv "$conf.tmp" "$conf"
  export CONTAINERS_CONF="$conf"
fi

# Machines whose HTTPS egress is re-signed by a local CA (its certificates added under
# /usr/local/share/ca-certificates) need pip in RUN steps to trust that CA too. The host's bundle
# and a pip.conf naming it are mounted read-only over /root, the HOME of RUN steps: /root exists
# in every image, so no mount point and nothing of it is committed; the images do not change.
# STRATUS_BUILD_CA_BUNDLE names another bundle.
build_opts=()
ca_bundle="${STRATUS_BUILD_CA_BUNDLE:-}"
if [ -z "$ca_bundle" ] && [ -n "$(find /usr/local/share/ca-certificates -name '*.crt' 2>/dev/null)" ]
then
  ca_bundle=/etc/ssl/certs/ca-certificates.crt
fi
if [ -n "$ca_bundle" ]; then
  [ -r "$ca_bundle" ] || die "CA bundle $ca_bundle is not readable"
  build_home="$cache/build-home"
  mkdir -p "$build_home/.config/pip"
  cp "$ca_bundle" "$build_home/.stratus-build-ca.crt"
  printf '[global]\ncert = /root/.stratus-build-ca.crt\n' >"$build_home/.config/pip/pip.conf"
  build_opts+=(--volume "$build_home:/root:ro")
fi

# Seconds since $1 (an epoch time with fractions), to one decimal.
since() { python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$1"; }
now() { date +%s.%N; }

# Runs "$@" with its output in logs/$name.log; on failure shows the log's tail and stops.
logged() {
  local name="$1"; shift
  local log="$cache/logs/$name.log"
  if ! "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "$name: '$1 ${2:-}' failed (full output: $log)"
  fi
}

# The apt mirror this machine already uses for bookworm (deb822 sources first, then one-line).
mirror() {
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    uri="$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' \
      /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $0 ~ / bookworm / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# Removes a directory that a failed debootstrap may have left with /proc or /sys mounted in it:
# unmounted first (deepest first), and never crossing into another file system.
remove_tree() {
  local dir="$1" mnt
  [ -e "$dir" ] || return 0
  awk -v d="$(realpath "$dir")" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts \
    | sort -r | while read -r mnt; do umount -l "$mnt" || true; done
  rm -rf --one-file-system "$dir"
}

# The base image: the public debian:bookworm-slim when podman has it (pulled on a machine with a
# registry); otherwise made here with debootstrap from the Debian mirror and imported under the
# same name, so the Dockerfiles build unchanged either way. The rootfs tarball is kept, so a
# re-import after `podman system reset` takes seconds.
ensure_base() {
  podman image exists "$base_tag" && return 0
  local tarball="$cache/base/debian-bookworm-minbase.tar" t rootfs
  if [ ! -s "$tarball" ]; then
    t="$(now)"
    rootfs="$cache/base/rootfs.tmp"
    remove_tree "$rootfs"
    local url; url="$(mirror)"
    logged debootstrap debootstrap --variant=minbase bookworm "$rootfs" "$url"
    # As the slim image: no docs, man pages or translations (excluded from now on, and removed);
    # apt keeps no downloaded packages or caches in a layer; no host identity; apt from the
    # mirror this machine uses (with its updates and security suites when it lists them).
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/stratus-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/stratus-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Apt::AutoRemove::SuggestsImportant "false";
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -rf "$rootfs"/usr/share/{groff,info,linda,lintian,man}/*
    if [ -r /etc/apt/sources.list.d/debian.sources ] \
      && grep -q '^Suites:.*bookworm' /etc/apt/sources.list.d/debian.sources; then
      cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/debian.sources"
      rm -f "$rootfs/etc/apt/sources.list"
    fi
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
      "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
    : >"$rootfs/etc/resolv.conf"
    rm -f "$rootfs/etc/hostname"
    # debootstrap's device nodes: the runtime mounts /dev, as in any image.
    mountpoint -q "$rootfs/dev" || find "$rootfs/dev" -mindepth 1 -delete
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    remove_tree "$rootfs"
    say "base rootfs: debootstrap bookworm from $url in $(since "$t")s ($(du -m "$tarball" | cut -f1) MB)"
  fi
  t="$(now)"
  logged base-import podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$tarball" "$base_tag"
  say "$base_tag: imported from $tarball in $(since "$t")s"
}

# sha256 of an image's inputs: its Dockerfile, every file its COPY/ADD lines take from the
# context (paths and contents; caches excluded as .dockerignore does), the ids of the images it
# builds FROM, and any extra strings (build args, the Go version).
#   inputs_hash DOCKERFILE CONTEXT [EXTRA...]
inputs_hash() {
  python3 - "$@" <<'PY'
import hashlib, json, os, shlex, subprocess, sys
from pathlib import Path

dockerfile, context, extras = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
SKIP_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
digest = hashlib.sha256()

def walk(path):
    if path.is_file():
        return [path]
    found = []
    for top, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        found += [Path(top) / f for f in sorted(files) if not f.endswith(".pyc")]
    return found

def add(*parts):
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        digest.update(len(data).to_bytes(8, "big") + data)

text = dockerfile.read_text()
add("dockerfile", text, *extras)
lines, current = [], ""
for raw in text.splitlines():
    if raw.lstrip().startswith("#"):
        continue
    if raw.rstrip().endswith("\\"):
        current += raw.rstrip()[:-1] + " "
        continue
    lines.append(current + raw)
    current = ""
stages = set()
for line in lines:
    words = line.split()
    if not words:
        continue
    op = words[0].upper()
    if op == "FROM":
        args = [w for w in words[1:] if not w.startswith("--")]
        image = args[0]
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2].lower())
        if image == "scratch" or image.lower() in stages:
            continue
        found = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image],
                               capture_output=True, text=True)
        if found.returncode != 0:
            sys.exit(f"base image {image} of {dockerfile} is not in podman's storage")
        add("from", image, found.stdout.strip())
    elif op in ("COPY", "ADD"):
        rest = line.split(None, 1)[1].strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        sources = [a for a in args if not a.startswith("--")][:-1]
        for source in sources:
            matches = sorted(context.glob(source)) if any(c in source for c in "*?[") \
                else [context / source]
            if not matches or not all(m.exists() for m in matches):
                sys.exit(f"{dockerfile}: {source} is not in the build context {context}")
            for match in matches:
                for f in walk(match):
                    add("file", f.relative_to(context), oct(f.stat().st_mode & 0o111),
                        f.read_bytes())
print(digest.hexdigest())
PY
}

rebuilt=()   # names whose archive was written in this run
entries=()   # name<TAB>tag<TAB>archive<TAB>hash, for index.json

# build NAME TAG DOCKERFILE CONTEXT HASH [PREPARE-FUNCTION]: builds the image when podman's copy
# carries another inputs hash, then saves its archive when the archive holds another hash.
build() {
  local name="$1" tag="$2" dockerfile="$3" context="$4" hash="$5" prepare="${6:-}"
  local archive="$cache/$name.tar" t have status
  have="$(podman image inspect --format "{{index .Labels \"$label\"}}" "$tag" 2>/dev/null || true)"
  if [ "$have" = "$hash" ]; then
    status="up to date"
  else
    t="$(now)"
    [ -z "$prepare" ] || "$prepare"
    logged "$name" podman build --pull=never --network=host --layers "${build_opts[@]}" \
      --label "$label=$hash" -f "$dockerfile" -t "$tag" "$context"
    status="built in $(since "$t")s"
  fi
  if [ ! -s "$archive" ] || [ "$(cat "$archive.inputs" 2>/dev/null)" != "$hash" ]; then
    t="$(now)"
    rm -f "$archive.tmp"
    logged "$name-save" podman save --format docker-archive -o "$archive.tmp" "$tag"
    mv "$archive.tmp" "$archive"
    echo "$hash" >"$archive.inputs.tmp" && mv "$archive.inputs.tmp" "$archive.inputs"
    status="$status, saved in $(since "$t")s"
    rebuilt+=("$name")
  fi
  local size
  size="$(podman image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
  say "$tag: $status ($size)"
  entries+=("$name"$'\t'"$tag"$'\t'"$archive"$'\t'"$hash")
}

# The pause binary: static, from hack/tools/pause with the local Go toolchain only.
pause_dir="$root/hack/tools/pause"
build_pause_binary() {
  (cd "$pause_dir" && CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS= \
    go build -trimpath -ldflags='-s -w' -o "$cache/pause/pause" .) \
    || die "pause: go build failed in $pause_dir"
}

ensure_base

# The pause image's inputs are its sources and the Go toolchain (its context is the binary).
pause_hash="$(
  cd "$pause_dir"
  { go version; sha256sum go.mod main.go Dockerfile; } | sha256sum | cut -d' ' -f1
)"
build pause localhost/stratus/pause:1 "$pause_dir/Dockerfile" "$cache/pause" "$pause_hash" \
  build_pause_binary

version="$(awk -F'"' '/^appVersion:/ {print $2}' "$root/charts/stratus/Chart.yaml")"
[ -n "$version" ] || die "no appVersion in charts/stratus/Chart.yaml"
images=(
  "operator|ghcr.io/stratus-dev/stratus-operator:$version|Dockerfile"
  "train-example|localhost/stratus/train-example:dev|examples/train/Dockerfile"
  "model-server|localhost/stratus/model-server:dev|examples/serve/Dockerfile"
)
for spec in "${images[@]}"; do
  IFS='|' read -r name tag dockerfile <<<"$spec"
  hash="$(inputs_hash "$root/$dockerfile" "$root")" || die "$name: cannot hash its inputs"
  build "$name" "$tag" "$root/$dockerfile" "$root" "$hash"
done

# The index the real node imports at start: every image, whether rebuilt now or not.
printf '%s\n' "${entries[@]}" | python3 -c '
import json, sys
rows = [line.rstrip("\n").split("\t") for line in sys.stdin if line.strip()]
keys = ("name", "tag", "archive", "hash")
json.dump([dict(zip(keys, row)) for row in rows], sys.stdout, indent=2)
print()' >"$cache/index.json.tmp"
mv "$cache/index.json.tmp" "$cache/index.json"

# A running local cluster gets what changed now; one started later imports index.json itself.
if [ -n "${STRATUS_STATE_DIR:-}" ] && [ ${#rebuilt[@]} -gt 0 ]; then
  # containerd's socket is where the cluster put it (outside the state dir, whose path may be too
  # long for a socket): asked of the cluster's own layout, not derived here a second time.
  sock="$("$root/.venv/bin/python" -c '
import sys
from pathlib import Path
from stratus.devcluster.cluster import Layout
print(Layout(Path(sys.argv[1]).resolve()).node.socket)' "$STRATUS_STATE_DIR")"
  if [ -S "$sock" ]; then
    for name in "${rebuilt[@]}"; do
      t="$(now)"
      logged "$name-import" ctr --address "$sock" -n k8s.io images import --snapshotter=overlayfs \
        "$cache/$name.tar"
      say "$name: imported into $sock in $(since "$t")s"
    done
  else
    say "no containerd socket at $sock: nothing imported"
  fi
fi
