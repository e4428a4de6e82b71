#!/usr/bin/env bash
# Build the MAGNeto images with podman and prove they work: train in the image on synthetic
# data, serve the checkpoint, answer a request, pass the HEALTHCHECK, run as uid 10001, stop
# gracefully. Needs root, podman, runc and (for the first run) debootstrap; no Docker daemon
# and no container registry: the Python base is made from Debian's packages.
#
#   docker/smoke.sh                 # both targets: cpu, then gpu (which runs on the CPU here)
#   docker/smoke.sh cpu             # one target
#
# Environment:
#   MAGNETO_SMOKE_WORK        work folder (default /var/tmp/magneto-smoke): rootfs, data, runs
#   MAGNETO_SMOKE_MIRROR      Debian mirror for debootstrap (default: this host's apt source)
#   MAGNETO_SMOKE_CPU_TORCH_INDEX  torch index of the cpu target (default empty: pip's own
#                             index, as PyTorch's CPU index may be unreachable; on a normal
#                             host set https://download.pytorch.org/whl/cpu for a lean image)
#   MAGNETO_SMOKE_PORT        port the served container listens on (default 18000; host network)
# The host's pip settings (pip config and PIP_* variables: index, extra indexes, find-links,
# constraints, certificate) are passed to the build stages as build arguments, and the local
# folders they name are mounted read-only into the build, so the build reaches the same
# packages this host does.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${MAGNETO_SMOKE_WORK:-/var/tmp/magneto-smoke}"
PORT="${MAGNETO_SMOKE_PORT:-18000}"
TARGETS=("${@:-cpu gpu}")
read -r -a TARGETS <<<"${TARGETS[*]}"
DEBIAN_IMAGE=localhost/debian-bookworm:base
PYTHON_IMAGE=localhost/magneto-python:3.11-bookworm
export CONTAINERS_CONF="$REPO/docker/smoke/containers.conf"
PODMAN=(podman --runtime runc)

say() { printf '[smoke] %s\n' "$*"; }
fail() { printf '[smoke] FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

for target in "${TARGETS[@]}"; do
  case "$target" in cpu|gpu) ;; *) fail "unknown target '$target' (cpu or gpu)" ;; esac
done
for tool in podman runc python3; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install podman runc)"
done
[ "$(id -u)" = 0 ] || fail "run as root (rootful podman)"
mkdir -p "$WORK"

# ---- base images -----------------------------------------------------------------------------
# The first non-security Debian mirror in this host's apt sources: deb822 *.sources files and
# one-line sources.list files, whichever exist. Never fails (set -e, pipefail): an empty answer
# is reported by the caller. APT_ETC: where apt's configuration is (tests point it elsewhere).
debian_mirror() {
  if [ -n "${MAGNETO_SMOKE_MIRROR:-}" ]; then echo "$MAGNETO_SMOKE_MIRROR"; return 0; fi
  local etc="${APT_ETC:-/etc/apt}" files=() file
  for file in "$etc"/sources.list.d/*.sources "$etc"/sources.list "$etc"/sources.list.d/*.list; do
    [ -f "$file" ] && files+=("$file")
  done
  [ "${#files[@]}" -gt 0 ] || return 0
  awk '/^URIs:/ {print $2} /^deb / {print ($2 ~ /^\[/) ? $3 : $2}' "${files[@]}" |
    { grep -v security || true; } | { head -n 1; cat >/dev/null; }
}

if ! podman image exists "$DEBIAN_IMAGE"; then
  command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
  mirror="$(debian_mirror)"
  [ -n "$mirror" ] || fail "no Debian mirror found: set MAGNETO_SMOKE_MIRROR"
  say "making $DEBIAN_IMAGE with debootstrap from $mirror"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    fail "debootstrap failed, see $WORK/debootstrap.log"
  tar -C "$WORK/rootfs" -c . | podman import - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$WORK/rootfs"
fi
if ! podman image exists "$PYTHON_IMAGE"; then
  say "making $PYTHON_IMAGE (stands in for python:3.11-slim-bookworm)"
  "${PODMAN[@]}" build --network host --format docker --build-arg DEBIAN_BASE="$DEBIAN_IMAGE" \
    -f "$REPO/docker/smoke/python-base.Containerfile" -t "$PYTHON_IMAGE" "$REPO/docker/smoke" \
    >"$WORK/python-base.log" 2>&1 || fail "python base build failed, see $WORK/python-base.log"
fi

# podman-compose with `config` and profiles (Debian's 1.0.3 has neither): from the index.
COMPOSE="$WORK/tools/bin/podman-compose"
if [ ! -x "$COMPOSE" ]; then
  say "installing podman-compose into $WORK/tools"
  python3 -m venv "$WORK/tools" && "$WORK/tools/bin/pip" install -q 'podman-compose>=1.3' ||
    fail "could not install podman-compose"
fi

# ---- this host's pip settings as build arguments, and the local folders they name -----------
PIP_ARGS=()
declare -A MOUNTS=()
pip_setting() {  # NAME VALUE: pass to the build; mount every absolute local path it names
  local name="$1" value="$2" word path
  PIP_ARGS+=(--build-arg "$name=$value")
  for word in $value; do
    path="${word#file://}"
    [ "${path:0:1}" = / ] && [ -e "$path" ] || continue
    [ -d "$path" ] || path="$(dirname "$path")"
    MOUNTS["$path"]=1
  done
}
declare -A SEEN=()
while IFS= read -r line; do  # pip config list: global.find-links='/opt/wheels', :env:.cert='...'
  key="${line%%=*}"; key="${key##*.}"
  value="${line#*=}"; value="${value#\'}"; value="${value%\'}"
  name="PIP_$(echo "$key" | tr 'a-z-' 'A-Z_')"
  case "$name" in
    PIP_INDEX_URL|PIP_EXTRA_INDEX_URL|PIP_FIND_LINKS|PIP_CONSTRAINT|PIP_CERT|PIP_DEFAULT_TIMEOUT)
      [ -n "${SEEN[$name]:-}" ] && continue
      SEEN["$name"]=1
      pip_setting "$name" "$value" ;;
  esac
done < <(python3 -m pip config list 2>/dev/null | sort -r)  # sort -r: ':env:' after 'global.'
[ -d /etc/ssl/certs ] && MOUNTS["/etc/ssl/certs"]=1  # the host's CA bundle reaches the index
VOLUMES=()
for path in "${!MOUNTS[@]}"; do VOLUMES+=(-v "$path:$path:ro"); done

# ---- one target: build, train in the image, serve, ask, check, stop --------------------------
prove() {
  local target="$1" image="localhost/magneto:$1" dir="$WORK/$1" started build_s ready_s stop_s
  local name="magneto-smoke-$1"
  say "== $target =="
  started="$(now)"
  "${PODMAN[@]}" build --network host --format docker --target "$target" \
    --build-arg BASE="$PYTHON_IMAGE" \
    --build-arg CPU_TORCH_INDEX="${MAGNETO_SMOKE_CPU_TORCH_INDEX:-}" \
    "${PIP_ARGS[@]}" "${VOLUMES[@]}" \
    -f "$REPO/docker/Dockerfile" -t "$image" "$REPO" >"$WORK/build-$target.log" 2>&1 ||
    { tail -n 30 "$WORK/build-$target.log" >&2; fail "build of $target failed, see $WORK/build-$target.log"; }
  build_s="$(since "$started")"
  say "built $image in ${build_s} s"

  rm -rf "$dir" && mkdir -p "$dir/data" "$dir/runs" "$dir/models"
  chown -R 10001 "$dir/data" "$dir/runs"
  local run=("${PODMAN[@]}" run --rm --network host --health-interval disable)
  "${run[@]}" -v "$dir/data:/data" "$image" sh -c \
    'magneto synth --out /data/raw --items 240 --unlabeled 0 --seed 3 --no-defects >/dev/null &&
     magneto prepare nuswide --root /data/raw --out /data/prepared >/dev/null' ||
    fail "synth/prepare in the $target image failed"
  local train=(train --config=/app/configs/synthetic.yaml --data=/data/prepared
               --images=/data/raw/Flickr --out=/runs/smoke --epochs=1)
  if [ "$target" = gpu ]; then  # the compose file's train profile (its image is magneto:gpu)
    podman tag "$image" localhost/magneto:gpu >/dev/null
    local compose=("$COMPOSE" -f "$REPO/docker/compose.yaml" -f "$REPO/docker/compose.no-gpu.yaml"
                   -f "$REPO/docker/smoke/compose.host-network.yaml" --profile train)
    export MAGNETO_DATA_DIR="$dir/data" MAGNETO_RUNS_DIR="$dir/runs" MAGNETO_MODELS_DIR="$dir/models"
    "${compose[@]}" config >"$dir/compose-config.yaml" 2>&1 ||
      { cat "$dir/compose-config.yaml" >&2; fail "podman-compose cannot read docker/compose.yaml"; }
    say "compose: train profile, 1 epoch on synthetic data"
    "${compose[@]}" run --rm train "${train[@]}" >"$dir/train.log" 2>&1 ||
      { tail -n 20 "$dir/train.log" >&2; fail "compose train profile failed"; }
  else
    "${run[@]}" -v "$dir/data:/data:ro" -v "$dir/runs:/runs" "$image" "${train[@]}" \
      >"$dir/train.log" 2>&1 || { tail -n 20 "$dir/train.log" >&2; fail "training in the image failed"; }
  fi
  [ -f "$dir/runs/smoke/best_f1.ckpt" ] || fail "training wrote no best_f1.ckpt"
  say "trained 1 epoch in the image: $(grep -ao 'epoch 1/1: train loss.*' "$dir/train.log" | tail -n 1)"
  install -m 0444 "$dir/runs/smoke/best_f1.ckpt" "$dir/models/model.ckpt"

  podman rm -f "$name" >/dev/null 2>&1 || true
  started="$(now)"
  # no systemd here: no healthcheck timer; the HEALTHCHECK command is run by hand below
  "${PODMAN[@]}" run -d --name "$name" --network host -e MAGNETO_PORT="$PORT" --health-interval disable \
    -v "$dir/models:/models:ro" "$image" >/dev/null
  local deadline=$((SECONDS + 180))
  until python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/readyz', timeout=2)" 2>/dev/null; do
    [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] ||
      { podman logs "$name" | tail -n 20 >&2; fail "the $target container exited before ready"; }
    [ "$SECONDS" -lt "$deadline" ] || fail "not ready after 180 s"
    sleep 0.5
  done
  ready_s="$(since "$started")"
  say "ready in ${ready_s} s"

  python3 "$REPO/docker/smoke/ask.py" "http://127.0.0.1:$PORT" "$dir/data/prepared/val.csv" \
    "$dir/data/raw/Flickr" || fail "the $target service gave a wrong answer"

  local pid uid
  pid="$(podman inspect -f '{{.State.Pid}}' "$name")"
  uid="$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")"
  [ "$uid" = 10001 ] || fail "the server runs as uid $uid, not 10001"
  say "server process runs as uid $uid"
  podman healthcheck run "$name" >/dev/null || fail "the HEALTHCHECK command failed"
  say "HEALTHCHECK passes"

  started="$(now)"
  podman stop -t 10 "$name" >/dev/null
  stop_s="$(since "$started")"
  local code
  code="$(podman inspect -f '{{.State.ExitCode}}' "$name")"
  podman logs "$name" 2>&1 | grep -q 'Application shutdown complete' ||
    fail "no graceful shutdown in the logs"
  podman rm "$name" >/dev/null
  python3 -c "import sys; sys.exit(float(sys.argv[1]) >= 10 or sys.argv[2] != '0')" "$stop_s" "$code" ||
    fail "stop took ${stop_s} s with exit code $code (want < 10 s and 0)"
  say "stopped gracefully in ${stop_s} s (exit code $code)"
  local size
  size="$(podman image inspect -f '{{.Size}}' "$image")"
  say "$target: image $(python3 -c "print(f'{$size / 1e9:.2f} GB')"), build ${build_s} s, ready ${ready_s} s, stop ${stop_s} s"
}

for target in "${TARGETS[@]}"; do prove "$target"; done
say "all passed: ${TARGETS[*]}"
