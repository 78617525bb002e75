#!/usr/bin/env bash
# Install llama-cpp-python with its OpenAI-compatible server, built from the sdist with AMX off: on a CPU
# that reports AMX, a native build segfaults on any multi-token prompt (see ../shared/models/README.md).
# The wheel is kept in $DHRD_WHEELS (default ~/.cache/dhrd/wheels), so a second install takes seconds.
# Needs cmake and a C++ compiler; about 7 minutes on 2 cores the first time.
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
wheels="${DHRD_WHEELS:-$HOME/.cache/dhrd/wheels}"
mkdir -p "$wheels"
if ! ls "$wheels"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  export CMAKE_ARGS="-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  python -m pip wheel --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -w "$wheels"
fi
python -m pip install "$wheels"/llama_cpp_python-"$version"-*.whl
python -m pip install 'llama-cpp-python[server]'=="$version"  # the server's own dependencies (fastapi, uvicorn, ...)
