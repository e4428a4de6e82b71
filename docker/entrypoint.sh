#!/bin/sh
# Container entry: `serve` (the default) checks the checkpoint before starting the server, so a
# missing or unreadable mount fails at once with one clear line instead of a traceback.
# `train` and `pretrain` run as `magneto train ...`, with one process per GPU through torchrun
# when more than one GPU is visible (MAGNETO_NPROC overrides the count).
# Any other command (magneto ..., python ..., sh) runs as given.
set -eu

say() { printf 'magneto-entrypoint: %s\n' "$*" >&2; }

case "${1:-serve}" in
  serve) ;;
  train|pretrain)
    nproc="${MAGNETO_NPROC:-$(python -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)}"
    case "$nproc" in
      ''|*[!0-9]*) say "MAGNETO_NPROC must be a whole number, not '$nproc'"; exit 64 ;;
    esac
    if [ "$nproc" -gt 1 ]; then
      exec python -m torch.distributed.run --standalone --nproc_per_node="$nproc" -m magneto.cli.main "$@"
    fi
    exec magneto "$@" ;;
  *) exec "$@" ;;
esac
[ "$#" -gt 0 ] && shift

checkpoint="${MAGNETO_CHECKPOINT:-}"
previous=""
for arg in "$@"; do  # a --checkpoint flag wins over the environment
  case "$arg" in
    --checkpoint=*) checkpoint="${arg#--checkpoint=}" ;;
    *) [ "$previous" = "--checkpoint" ] && checkpoint="$arg" ;;
  esac
  previous="$arg"
done

if [ -z "$checkpoint" ]; then
  say "no checkpoint: set MAGNETO_CHECKPOINT or pass --checkpoint PATH"
  exit 64
fi
if [ ! -e "$checkpoint" ]; then
  say "checkpoint $checkpoint not found: mount it (e.g. -v \$PWD/models:/models:ro) or bake it in with --build-arg CHECKPOINT=..."
  exit 66
fi
if [ ! -f "$checkpoint" ]; then
  say "checkpoint $checkpoint is not a regular file"
  exit 66
fi
if [ ! -r "$checkpoint" ]; then
  say "checkpoint $checkpoint is not readable by uid $(id -u): fix its permissions (e.g. chmod a+r)"
  exit 77
fi
export MAGNETO_CHECKPOINT="$checkpoint"
exec magneto serve "$@"
