#!/usr/bin/env bash
# CMake flags for a ggml (llama.cpp) CPU build that uses exactly the instruction sets this CPU reports, with
# AMX always off: on CPUs with AMX a native build segfaults on multi-token prompts (../shared/models/README.md),
# and a flag the CPU lacks (e.g. AVX-VNNI on AMD EPYC) dies with "Illegal instruction".
set -euo pipefail
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
for pair in AVX:avx AVX2:avx2 FMA:fma F16C:f16c BMI2:bmi2 AVX_VNNI:avx_vnni AVX512:avx512f \
            AVX512_VBMI:avx512vbmi AVX512_VNNI:avx512_vnni AVX512_BF16:avx512_bf16; do
  option="${pair%%:*}"; flag="${pair##*:}"
  if [[ "$cpu_flags" == *" $flag "* ]]; then args+=" -DGGML_$option=ON"; else args+=" -DGGML_$option=OFF"; fi
done
echo "$args"
