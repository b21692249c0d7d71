#!/usr/bin/env bash
# Run the test suite (or the pytest arguments given) under every ATen kernel set this CPU can execute and with 1 and 2
# OpenMP threads, and print one line of counts per setting. This is how to see another CPU's float results on your own
# machine (issue 12): an AMD EPYC without AVX-512 runs the avx2 kernels, and `default` is the scalar fallback.
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
    ATEN_CPU_CAPABILITY=$cap OMP_NUM_THREADS=$threads $PY -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@" \
      >"$log" 2>&1 || status=1
    printf '%-8s threads=%s  %s\n' "$cap" "$threads" "$(tail -n 1 "$log")"
    grep '^FAILED' "$log" || true
  done
done
echo "logs in $out"
exit $status
