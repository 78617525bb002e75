#!/usr/bin/env bash
# Install llama-cpp-python with its OpenAI-compatible server, built from the sdist with AMX off: on a CPU
# that reports AMX, a native build segfaults on any multi-token prompt (see ../shared/models/README.md).
# The wheel is kept in $DHRD_WHEELS (default ~/.cache/dhrd/wheels), so a second install takes seconds.
# Needs cmake and a C++ compiler; about 7 minutes on 2 cores the first time.
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
flags="$(bash "$(dirname "$0")/ggml_cpu_flags.sh")"
# one wheel per set of CPU flags: a wheel built for another CPU may die with "Illegal instruction"
wheels="${DHRD_WHEELS:-$HOME/.cache/dhrd/wheels}/$(echo "$flags" | md5sum | cut -c1-8)"
mkdir -p "$wheels"
if ! ls "$wheels"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  export CMAKE_ARGS="-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF $flags"
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  python -m pip wheel --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -w "$wheels"
fi
python -m pip install "$wheels"/llama_cpp_python-"$version"-*.whl
python -m pip install 'llama-cpp-python[server]'=="$version"  # the server's own dependencies (fastapi, uvicorn, ...)
