#!/usr/bin/env bash
# SparkVox-style launcher on top of torchrun and hparams overrides.
#   bash recipes/train.sh --config hparams/bicodec_24k.yaml --log_dir results/run1 \
#       [--nnodes 1] [--node_rank 0] [--master_addr 127.0.0.1] [--master_port 29500] \
#       [--nproc_per_node -1] [--resume true|false] [--version v1] [-- extra overrides...]
# --nproc_per_node -1 uses every visible GPU (1 process on a CPU-only machine).
# --resume false moves an existing log_dir/version aside instead of resuming it.
set -euo pipefail
config="" log_dir="results" nnodes=1 node_rank=0 master_addr=127.0.0.1 master_port=29500
nproc=-1 resume=true version=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --config) config="$2"; shift 2 ;;
        --log_dir) log_dir="$2"; shift 2 ;;
        --nnodes) nnodes="$2"; shift 2 ;;
        --node_rank) node_rank="$2"; shift 2 ;;
        --master_addr) master_addr="$2"; shift 2 ;;
        --master_port) master_port="$2"; shift 2 ;;
        --nproc_per_node) nproc="$2"; shift 2 ;;
        --resume) resume="$2"; shift 2 ;;
        --version) version="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[[ -n "$config" ]] || { echo "train.sh: --config is required" >&2; exit 2; }
if [[ "$nproc" == "-1" ]]; then
    nproc=$(python3 -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
out="$log_dir${version:+/$version}"
if [[ "$resume" == "false" && -d "$out" ]]; then
    mv "$out" "$out.$(date +%Y%m%d-%H%M%S)"
fi
extra=()
if ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    extra+=(--device cpu --distributed_backend gloo)
fi
here="$(cd "$(dirname "$0")" && pwd)"
exec python3 -m torch.distributed.run --nnodes "$nnodes" --node_rank "$node_rank" \
    --master_addr "$master_addr" --master_port "$master_port" --nproc_per_node "$nproc" \
    "$here/train.py" "$config" --output_folder "$out" "${extra[@]}" "$@"
