#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` (parallel slots, continuous batching: the fast way to serve a teacher
# on CPU) from the sources vendored in the llama-cpp-python sdist, with AMX off (a native build segfaults on
# this CPU, see ../shared/models/README.md) and
# only the instruction sets this CPU has (scripts/ggml_cpu_flags.sh). Prints the binary's path. About 6 minutes on 2 cores, once.
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
flags="$(bash "$(dirname "$0")/ggml_cpu_flags.sh")"
# one build per set of CPU flags: a binary built for another CPU may die with "Illegal instruction"
root="${DHRD_LLAMA_SERVER_DIR:-$HOME/.cache/dhrd/llama-server-$version-$(echo "$flags" | md5sum | cut -c1-8)}"
if [ ! -x "$root/build/bin/llama-server" ]; then
  mkdir -p "$root"
  python -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$root" >&2
  tar -xzf "$root/llama_cpp_python-$version.tar.gz" -C "$root"
  src="$root/llama_cpp_python-$version/vendor/llama.cpp"
  # shellcheck disable=SC2046
  cmake -S "$src" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DBUILD_SHARED_LIBS=OFF $flags >&2
  cmake --build "$root/build" -j"$(nproc)" --target llama-server >&2
fi
echo "$root/build/bin/llama-server"
