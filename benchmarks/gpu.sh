#!/usr/bin/env bash
# The GPU engine on a CUDA machine, as it is: the tests that need CUDA, then `gatedrnn bench
# --device cuda` against cuDNN's torch.nn.LSTM (T=64, B in {32, 128}, H in {512, 1024}, every
# cell, training step and no-grad forward, TF32 off for cuDNN and cuBLAS alike), then
# torch.compile of the autograd loop (LSTM, H=512, B=32). Each part has its own time limit
# (200 + 2 x 120 + 140 s: under 10 minutes whatever happens) and the script goes on when one fails.
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # default: $OUT if set, else benchmarks/gpu-run
#
# Writes OUT_DIR/{machine.txt, tests.txt, bench_b*.{txt,json}, compile.{txt,json}, summary.txt};
# the tables are in summary.txt. Copy the figures into benchmarks/RESULTS.md with
# the command, machine and date.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-benchmarks/gpu-run}}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # the interpreter would run the kernels on the host
py="${PYTHON:-python3}"

# what it needs: torch with CUDA, triton, pytest, numpy (gatedrnn itself runs from src/)
if ! "$py" -c "import torch, triton, pytest, numpy; assert torch.cuda.is_available()" 2>/dev/null; then
  echo "installing torch, triton, pytest, numpy (needs a package index)" >&2
  "$py" -m pip install -q torch triton pytest numpy || true
fi
if ! "$py" -c "import torch, triton, pytest; assert torch.cuda.is_available()"; then
  echo "gpu.sh needs torch with a CUDA device, triton and pytest; stopping" >&2
  exit 1
fi
{
  date -u '+%Y-%m-%d %H:%M UTC'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  "$py" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'triton', triton.__version__)"
  git rev-parse --short HEAD 2>/dev/null
} | tee "$out/machine.txt"

status=0
part() {  # part NAME LIMIT_S LOG COMMAND...: run with a time limit into LOG, keep going on failure
  local name=$1 limit=$2 log=$3; shift 3
  local start=$SECONDS
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  tail -n 40 "$log"
  echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  [ $rc -eq 0 ] || status=1
}

part tests 200 "$out/tests.txt" "$py" -m pytest tests/torch_engine/test_triton_cuda.py -q -p no:cacheprovider -rfEs
cells=lstm,peephole,cifg,gru,rnn,mogrifier
for b in 32 128; do
  part "bench B=$b" 120 "$out/bench_b$b.txt" "$py" -m gatedrnn bench --device cuda --cells "$cells" \
    --sizes 512,1024 --batch-size "$b" --seq-len 64 --kinds train,forward --engines torch,auto,triton,fused \
    --repeats 10 --json "$out/bench_b$b.json"
done
part "torch.compile" 140 "$out/compile.txt" "$py" -m gatedrnn bench --device cuda --cells lstm --sizes 512 \
  --batch-size 32 --seq-len 64 --kinds train,forward --engines torch,triton,compile --repeats 10 \
  --json "$out/compile.json"
cat "$out"/bench_b32.txt "$out"/bench_b128.txt "$out"/compile.txt >>"$out/summary.txt" 2>/dev/null
echo "results in $out" >&2
exit $status
