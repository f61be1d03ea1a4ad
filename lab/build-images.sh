#!/usr/bin/env bash
# Builds the lab image when its definition changed, and only then.
#
#   base  localhost/upkeep-lab-base:<hash of packages.txt>   debootstrap + podman import
#   lab   localhost/upkeep-lab:<hash of the whole definition> podman build --network none
#
# Prints the lab image reference on its last line. Needs root (debootstrap) and podman.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cache="$here/.cache"
python=${PYTHON:-"$top/.venv/bin/python"}
mirror=${UPKEEP_LAB_MIRROR:-}
suite=bookworm

log() { printf '[lab-image] %s\n' "$*" >&2; }

if [ -z "$mirror" ]; then
  # Use the mirror this machine's apt already uses; fall back to Debian's default.
  mirror=$(grep -rhoE '^(URIs:|deb)\s+\S+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
            | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

packages=$(grep -vE '^\s*(#|$)' "$here/images/packages.txt" | tr '\n' ',' | sed 's/,$//')
base_hash=$(printf '%s\n%s\n' "$suite" "$packages" | sha256sum | cut -c1-12)
base="localhost/upkeep-lab-base:$base_hash"

lab_hash=$( { echo "$base_hash"; cat "$here/images/Containerfile" "$here/app/requirements.txt" \
              "$here/images/pip-audit-requirements.txt" "$0"; } \
            | sha256sum | cut -c1-12)
image="localhost/upkeep-lab:$lab_hash"

if podman image exists "$image"; then
  log "up to date: $image"
  # `latest` may name another build (a branch with another image definition): point it here.
  podman tag "$image" localhost/upkeep-lab:latest
  echo "$image"
  exit 0
fi

if ! podman image exists "$base"; then
  log "building $base with debootstrap ($suite from $mirror)"
  work=$(mktemp -d "${TMPDIR:-/tmp}/upkeep-lab-rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  debootstrap --variant=minbase --include="$packages" "$suite" "$work/rootfs" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -n 40 "$work/debootstrap.log" >&2; exit 1; }
  # Security updates stay reachable for the patching runbooks; caches go.
  cat > "$work/rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
SOURCES
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  : > "$work/rootfs/etc/machine-id"
  tar -C "$work/rootfs" --numeric-owner -c . | podman import --change 'CMD ["/sbin/init"]' - "$base" >/dev/null
  rm -rf "$work"
  trap - EXIT
fi

log "collecting wheels for the sample application"
mkdir -p "$cache/wheels"
# The image runs Debian's python3 (3.11.2): resolve markers for it, not for this venv.
"$python" -m pip download --quiet --only-binary=:all: --python-version 3.11.2 --platform manylinux_2_36_x86_64 \
  --platform manylinux2014_x86_64 --platform any --dest "$cache/wheels" -r "$here/app/requirements.txt" \
  -r "$here/images/pip-audit-requirements.txt"

log "building $image"
podman build --quiet --network none --build-arg "BASE=$base" -f "$here/images/Containerfile" \
  -t "$image" "$here" >/dev/null
podman tag "$image" localhost/upkeep-lab:latest
echo "$image"
