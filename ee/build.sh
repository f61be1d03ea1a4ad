#!/usr/bin/env bash
# Builds the execution environment image when its inputs changed, and only then.
#
#   lab base  localhost/upkeep-lab-base:<hash>   lab/build-images.sh (debootstrap + podman import)
#   ee base   localhost/upkeep-ee-base:<hash>    ee/base.Containerfile on the lab base (apt, --network host)
#   ee        localhost/upkeep-runbooks-ee:<hash> ansible-builder build, offline (wheels from the host)
#
# The EE hash covers execution-environment.yml, this directory, the ee base and the
# collection's content (FILES.json of the tarball `make build` wrote, which lists every
# file's checksum). Prints the image reference on its last line. Needs root and podman.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cache="$top/lab/.cache"
python=${PYTHON:-"$top/.venv/bin/python"}
builder=${ANSIBLE_BUILDER:-"$top/.venv/bin/ansible-builder"}
definition="$top/execution-environment.yml"

log() { printf '[ee-image] %s\n' "$*" >&2; }

# The tarball the EE definition installs (its name is in additional_build_files).
tarball=$("$python" - "$definition" <<'PY'
import sys, yaml
with open(sys.argv[1]) as handle:
    ee = yaml.safe_load(handle)
print(ee["additional_build_files"][0]["src"])
PY
)
if [ ! -f "$top/$tarball" ]; then
  echo "ee: $tarball is missing; run 'make build' first (make ee does)" >&2
  exit 1
fi

# The lab's debootstrap base, named as lab/build-images.sh names it (same inputs, same hash).
suite=bookworm
packages=$(grep -vE '^\s*(#|$)' "$top/lab/images/packages.txt" | tr '\n' ',' | sed 's/,$//')
lab_base="localhost/upkeep-lab-base:$(printf '%s\n%s\n' "$suite" "$packages" | sha256sum | cut -c1-12)"
if ! podman image exists "$lab_base"; then
  log "the lab base $lab_base is missing: building the lab images"
  "$top/lab/build-images.sh" >/dev/null
fi

ee_base_hash=$( { echo "$lab_base"; cat "$here/base.Containerfile" "$here/apt-pkgmgr"; } | sha256sum | cut -c1-12)
ee_base="localhost/upkeep-ee-base:$ee_base_hash"
if ! podman image exists "$ee_base"; then
  log "building $ee_base on $lab_base"
  podman build --quiet --network host --build-arg "LAB_BASE=$lab_base" -f "$here/base.Containerfile" \
    -t "$ee_base" "$here" >/dev/null
fi

# Everything pip installs in the build, as wheels for the image's python (Debian's 3.11.2):
# ansible-core, ansible-runner and the EE's python dependencies from the definition, plus what
# ansible-builder's own steps install (bindep, pyyaml, packaging, dumb-init).
requirements=$("$python" - "$definition" <<'PY'
import sys, yaml
with open(sys.argv[1]) as handle:
    deps = yaml.safe_load(handle)["dependencies"]
wanted = [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]] + list(deps["python"])
wanted += ["bindep==2.14.0", "pyyaml==6.0.4", "packaging==26.4", "dumb-init==1.2.5"]
print("\n".join(wanted))
PY
)
wheels="$cache/ee-wheels"
req_hash=$(printf '%s\n' "$requirements" | sha256sum | cut -c1-12)
if [ "$(cat "$wheels/.requirements" 2>/dev/null || true)" != "$req_hash" ]; then
  log "downloading wheels to $wheels"
  rm -rf "$wheels"
  mkdir -p "$wheels"
  printf '%s\n' "$requirements" > "$cache/ee-requirements.txt"
  "$python" -m pip download --quiet --only-binary=:all: --python-version 3.11.2 \
    --platform manylinux_2_36_x86_64 --platform manylinux2014_x86_64 --platform any \
    --dest "$wheels" -r "$cache/ee-requirements.txt" 2> >(grep -v 'is ignored: it is neither a file' >&2)
  echo "$req_hash" > "$wheels/.requirements"
fi

content=$(tar -xzOf "$top/$tarball" FILES.json | sha256sum | cut -c1-12)
ee_hash=$( { echo "$ee_base" "$content" "$req_hash"; cat "$definition" "$0"; } | sha256sum | cut -c1-12)
image="localhost/upkeep-runbooks-ee:$ee_hash"
if podman image exists "$image"; then
  log "up to date: $image"
  podman tag "$image" localhost/upkeep-runbooks-ee:latest
  echo "$image"
  exit 0
fi

log "building $image with ansible-builder"
cd "$top"
# --network none: the build reads the wheels and the tarball only; the base has every system
# package (apt-pkgmgr installs nothing), and ansible-galaxy stays offline.
"$builder" build --file "$definition" --context "$top/context" --container-runtime podman \
  --tag "$image" --tag localhost/upkeep-runbooks-ee:latest \
  --build-arg "EE_BASE_IMAGE=$ee_base" \
  --build-arg "ANSIBLE_GALAXY_CLI_COLLECTION_OPTS=--offline" \
  --extra-build-cli-args "--network none --volume $wheels:/wheels:ro" \
  --verbosity 2 >&2
echo "$image"
