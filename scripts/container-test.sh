#!/usr/bin/env bash
# Build mrharmony's container image (container/Dockerfile) and run the BIDS App inside it as a
# study would: the image's root file system read-only, no network, the BIDS dataset and the models
# mounted read-only, only the output and the work directory writable. Not part of the test suite:
# it needs a container engine, and PyPI and Debian's packages for the build (minutes).
#
#   bash scripts/container-test.sh [SCRATCH]   (default: a new folder under /tmp, removed on success)
#
# ENGINE=podman (default) or docker. The base image debian:bookworm-slim is used where the engine
# has it or can pull it; elsewhere (as root, with debootstrap) a Debian bookworm minbase root file
# system is made from Debian's packages, imported as localhost/mrharmony-base:bookworm and built on.
# A local CPU wheel of torch for Python 3.11 (TORCH_WHEEL, or found in PIP_FIND_LINKS) goes into
# the build, as scripts/setup.sh installs it, and so does the CA bundle pip is told to trust
# (PIP_CERT; for pip behind a TLS-intercepting proxy), used during the build only.
#
# In the image it makes a small BIDS dataset (the simulator's tiny traveling heads, one session per
# platform), trains a RISH model (the main environment) and a ComBat model (the ComBat environment,
# mrharmony-combat), runs the participant level with each and the group level, and checks the
# outputs, the run records and GeneratedBy.Container of dataset_description.json.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE=${ENGINE:-podman}
log() { printf '[container-test %s] %s\n' "$(date +%T)" "$*"; }
fail() {
  printf 'container-test: %s\n' "$*" >&2
  exit 1
}
command -v "$ENGINE" >/dev/null || fail "no $ENGINE command; install podman (apt-get install podman buildah) or set ENGINE=docker."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
TAG=${TAG:-mrharmony:$version}

if [ "$#" -ge 1 ]; then
  W=$(realpath -m "$1")
  mkdir -p "$W"
  keep=1
else
  W=$(mktemp -d /tmp/mrharmony-container.XXXXXX)
  keep=0
fi
[ -z "$(ls -A "$W")" ] || fail "$W is not empty; give an empty or new folder."
log "scratch folder $W"

# 1. the base image
image_exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
base=debian:bookworm-slim
if ! image_exists "$base" && ! "$ENGINE" pull "docker.io/library/$base"; then
  base=localhost/mrharmony-base:bookworm
  if ! image_exists "$base"; then
    log "$ENGINE cannot pull debian:bookworm-slim: making $base from Debian's packages (debootstrap)"
    [ "$(id -u)" = 0 ] || fail "debootstrap needs root; pull or load debian:bookworm-slim into $ENGINE instead."
    command -v debootstrap >/dev/null || fail "no debootstrap command; apt-get install debootstrap."
    t0=$(date +%s)
    debootstrap --variant=minbase bookworm "$W/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$W/debootstrap.log" 2>&1 ||
      fail "debootstrap failed; its log: $W/debootstrap.log"
    rm -rf "$W/rootfs"/var/cache/apt/archives/*.deb "$W/rootfs"/var/lib/apt/lists/*
    tar -C "$W/rootfs" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    rm -rf "$W/rootfs"
    log "base image made in $(($(date +%s) - t0)) s"
  fi
fi

# 2. what this machine lets the engine do: a container of the base image must run. Where the
# engine's defaults are refused, the script adapts and says so: raising the containers' open-file
# and process limits (refused without CAP_SYS_RESOURCE: then they keep this shell's, the process
# limit under podman's own 32768), and crun on a host with cgroups in hybrid mode (then runc).
runtime=() # podman's global --runtime, for run
build_runtime=()
limits=()
for _ in 1 2 3; do
  if err=$("$ENGINE" "${runtime[@]}" run --rm --network none "${limits[@]}" "$base" true 2>&1); then
    break
  fi
  case "$err" in
    *"cgroups in hybrid mode"*)
      [ "${#runtime[@]}" = 0 ] && command -v runc >/dev/null ||
        fail "$ENGINE cannot run a container here: $err (install runc: apt-get install runc)."
      log "refused: $err; using runc"
      runtime=(--runtime runc)
      build_runtime=(--runtime runc)
      ;;
    *rlimit* | *RLIMIT*)
      [ "${#limits[@]}" = 0 ] || fail "$ENGINE cannot run a container here: $err"
      nproc=$(ulimit -u)
      { [ "$nproc" = unlimited ] || [ "$nproc" -gt 16384 ]; } && nproc=16384
      log "refused: $err; keeping this shell's limits (nofile $(ulimit -n), nproc $nproc)"
      limits=(--ulimit "nofile=$(ulimit -n):$(ulimit -n)" --ulimit "nproc=$nproc:$nproc")
      ;;
    *) fail "$ENGINE cannot run a container here: $err" ;;
  esac
done
[ -z "$err" ] || "$ENGINE" "${runtime[@]}" run --rm --network none "${limits[@]}" "$base" true ||
  fail "$ENGINE cannot run a container here."

# 3. the image, from the checkout's own files (tracked or new, not ignored)
ctx="$W/context"
mkdir -p "$ctx"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z -co --exclude-standard -- pyproject.toml README.md src container | tar --null -T - -c | tar -C "$ctx" -x
else
  cp -r pyproject.toml README.md src container "$ctx/"
fi
wheel=${TORCH_WHEEL:-}
if [ -z "$wheel" ]; then
  for d in ${PIP_FIND_LINKS:-}; do
    wheel=$(ls "$d"/torch-*+cpu-cp311-cp311-*"$(uname -m)".whl 2>/dev/null | sort | tail -n 1 || true)
    [ -n "$wheel" ] && break
  done
fi
if [ -n "$wheel" ]; then
  mkdir -p "$ctx/container/wheels"
  cp "$wheel" "$ctx/container/wheels/"
  log "PyTorch from $(basename "$wheel")"
fi
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then # pip here trusts this bundle (a proxy's CA): so does the build
  mkdir -p "$ctx/container/certs"
  cp "$PIP_CERT" "$ctx/container/certs/ca-bundle.crt"
fi
log "building $TAG on $base"
t0=$(date +%s)
"$ENGINE" build "${build_runtime[@]}" "${limits[@]}" --network host -f "$ctx/container/Dockerfile" --build-arg BASE="$base" \
  --build-arg MRHARMONY_TAG="$TAG" -t "$TAG" "$ctx"
log "image built in $(($(date +%s) - t0)) s"
rm -rf "$ctx"

# 4. how the image runs: read-only (podman would otherwise mount writable tmpfs on /tmp and /run),
# no network, as its own user (as root here: the writable folders are given to uid 1000)
ro=(--read-only)
[ "$ENGINE" = podman ] && ro+=(--read-only-tmpfs=false)
user=()
if [ "$(id -u)" != 0 ]; then
  user=(--user "$(id -u):$(id -g)")
  [ "$ENGINE" = podman ] && user+=(--userns=keep-id)
fi
mkdir -p "$W/data" "$W/bids" "$W/out" "$W/out-combat" "$W/work"
[ "$(id -u)" = 0 ] && chown 1000:1000 "$W/data" "$W/out" "$W/out-combat" "$W/work"
run() { "$ENGINE" "${runtime[@]}" run --rm --network none "${limits[@]}" "${ro[@]}" "${user[@]}" "$@"; }
# the steps that make the data and the models: everything under /data, /tmp a tmpfs
prep() { run --tmpfs /tmp -e MPLCONFIGDIR=/tmp/matplotlib -v "$W/data:/data" --entrypoint "$1" "$TAG" "${@:2}"; }
app() {
  run -v "$W/bids:/bids:ro" -v "$W/data/models:/models:ro" -v "$W/out:/out" -v "$W/out-combat:/out-combat" \
    -v "$W/work:/work" "$TAG" "$@"
}

# 5. a small BIDS dataset and two models, made in the image
t0=$(date +%s)
prep mrharmony --version
prep mrharmony simulate /data/sim --preset tiny --seed 7 --jobs 1 --quiet
printf '{"Name": "travel", "BIDSVersion": "1.9.0"}\n' >"$W/bids/dataset_description.json"
for sdir in "$W"/data/sim/sub-*/; do
  s=$(basename "$sdir")
  for pdir in "$sdir"*/; do
    [ -f "$pdir/dwi.nii.gz" ] || continue
    label=$(basename "$pdir" | tr -cd '[:alnum:]')
    d="$W/bids/$s/ses-$label/dwi"
    mkdir -p "$d"
    for ext in nii.gz bval bvec; do cp "$pdir/dwi.$ext" "$d/${s}_ses-${label}_dwi.$ext"; done
    if [ "$s" = sub-01 ] && [ -f "$pdir/mask.nii.gz" ]; then # a mask derivative for one participant
      m="$W/bids/derivatives/masks/$s/ses-$label/dwi"
      mkdir -p "$m"
      cp "$pdir/mask.nii.gz" "$m/${s}_ses-${label}_desc-brain_mask.nii.gz"
    fi
  done
done
chmod -R a+rX "$W/bids"
[ -d "$W/bids/sub-01/ses-gest/dwi" ] || fail "the simulated dataset has no ge_st platform of sub-01."
prep mrharmony dmri prepare /data/sim --quiet
for method in rish combat; do
  extra=""
  [ "$method" = combat ] && extra="  registration: none"
  printf 'data:\n  dataset: sim\n  split: subject\n  test_subjects: [sub-03]\nmodel:\n  method: %s\n%s\n' \
    "$method" "$extra" >"$W/data/$method.yaml"
done
prep mrharmony dmri train /data/rish.yaml --out /data/models/rish --quiet
prep mrharmony-combat dmri train /data/combat.yaml --out /data/models/combat --quiet
log "data and models made in the image in $(($(date +%s) - t0)) s"

# 6. the BIDS App, read-only
t0=$(date +%s)
app /bids /out participant --model /models/rish --filter ses=gest --target prisma_st \
  --n-cpus 2 --mem-gb 4 --work-dir /work/participant --quiet
app /bids /out-combat participant --participant-label 03 --model /models/combat --filter ses=gest \
  --target prisma_st --n-cpus 2 --work-dir /work/combat --quiet
app /bids /out group --n-cpus 2 --work-dir /work/group --quiet
log "participant (RISH, ComBat) and group levels in $(($(date +%s) - t0)) s"
set +e
app /bids /out group --force --work-dir /bids/work --quiet 2>"$W/refused.txt"
rc=$?
set -e
[ "$rc" = 2 ] || fail "a work directory on the read-only BIDS mount gave exit code $rc, not 2."
grep -q "cannot be created as the --work-dir" "$W/refused.txt" || fail "unexpected message: $(cat "$W/refused.txt")"

# 7. the outputs
python3 - "$W" "$TAG" <<'EOF'
import json
import pathlib
import sys

w, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
container = {"Type": "docker", "Tag": tag}
for out in ("out", "out-combat"):
    generated = json.loads((w / out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert generated["Name"] == "mrharmony" and generated.get("Container") == container, (out, generated)
fa = sorted((w / "out").glob("sub-*/ses-gest/dwi/*_space-prismast_model-tensor_param-fa_dwimap.nii.gz"))
assert [p.name.split("_")[0] for p in fa] == ["sub-01", "sub-02", "sub-03"], fa
assert (w / "out/sub-02/ses-gest/dwi/sub-02_ses-gest_space-prismast_desc-harmonized_dwi.nii.gz").is_file()
assert list((w / "out-combat/sub-03/ses-gest/dwi").glob("*_space-prismast_model-tensor_param-md_dwimap.nii.gz"))
record = json.loads((w / "out/sub-01/log/participant.json").read_text())
assert record["resources"] == {"n_cpus": 2, "mem_gb": 4.0, "work_dir": "/work/participant"}, record
assert record["container"] == container, record
group = json.loads((w / "out/group/group.json").read_text())
assert group["container"] == container and group["resources"]["work_dir"] == "/work/group", group
summary = (w / "out/group/summary.tsv").read_text().splitlines()
assert any("\tafter\tprismast\twhite_matter\t" in row for row in summary), summary
assert (w / "out/group/fa_md_by_site.png").stat().st_size > 1000
# matplotlib's cache went to the work directory, not to the read-only image
assert list((w / "work/group/matplotlib").iterdir()), "no matplotlib cache in the work directory"
print("checked:", len(fa), "participants harmonized (RISH), 1 (ComBat), the group summary, GeneratedBy.Container")
EOF
log "passed: $TAG"
if [ "$keep" = 0 ]; then rm -rf "$W"; fi
