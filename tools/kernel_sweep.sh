#!/usr/bin/env bash
# Run the test suite (or the pytest arguments given) under every ATen kernel set this CPU can execute and with 1 and 2
# OpenMP threads, and print one line of counts per setting. This is how to see another CPU's float results on your own
# machine (issue 12): an AMD EPYC without AVX-512 runs the avx2 kernels, and `default` is the scalar fallback.
# ATEN_CPU_CAPABILITY does not reach oneDNN (convolutions, some matmuls), so each setting also caps oneDNN's ISA:
# default -> SSE41, avx2 -> AVX2, native -> ALL. Without that cap an AVX2-only CPU's convolution results are not seen.
#   tools/kernel_sweep.sh                 # the whole suite, 6 settings
#   tools/kernel_sweep.sh -m numerics     # only the numerically sensitive tests
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
native=$($PY -c "import torch; print(torch.backends.cpu.get_cpu_capability().lower())")
caps=(default avx2)
[ "$native" != avx2 ] && [ "$native" != default ] && caps+=("$native")
out=$(mktemp -d)
status=0
for cap in "${caps[@]}"; do
  for threads in 1 2; do
    log="$out/$cap-$threads.log"
    case $cap in default) isa=SSE41 ;; avx2) isa=AVX2 ;; *) isa=ALL ;; esac
    ATEN_CPU_CAPABILITY=$cap ONEDNN_MAX_CPU_ISA=$isa OMP_NUM_THREADS=$threads $PY -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@" \
      >"$log" 2>&1 || status=1
    printf '%-8s onednn=%-5s threads=%s  %s\n' "$cap" "$isa" "$threads" "$(tail -n 1 "$log")"
    grep '^FAILED' "$log" || true
  done
done
echo "logs in $out"
exit $status
