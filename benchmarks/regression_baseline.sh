#!/usr/bin/env bash
# Make tests/baselines/regression.json: config/regression.yaml run with this machine's kernels
# (the reference, compared bit for bit where the environment matches) and under two other
# kernel sets, whose drift sets the tolerance used on other machines:
#   avx2:    ATen's AVX2 kernels, oneDNN capped at AVX2, MKL at AVX2 (an AVX2-only CPU such as
#            the AMD EPYC kind; the GEMM itself is then AVX2 too);
#   default: ATen's scalar kernels, oneDNN capped at SSE4.1, MKL at SSE4.2 (the worst case).
# What this does not emulate: another torch or oneDNN version, another core count's blocking
# in a library that adapts to it, or an ARM CPU. Run from the repository root with the venv
# active:  bash benchmarks/regression_baseline.sh   (about 2 minutes on two cores)
set -euo pipefail
out="${1:-tests/baselines/regression.json}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
run() {  # name, then environment assignments
    local name="$1"; shift
    env "$@" icsa regression run --work "$work/$name" --out "$work/$name.json" > "$work/$name.log" 2>&1 &
}
run native
run avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
wait
run default ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
wait
icsa regression baseline --reference "$work/native.json" \
    --others "$work/avx2.json" "$work/default.json" \
    --command "bash benchmarks/regression_baseline.sh ($(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%F))" \
    --out "$out"
