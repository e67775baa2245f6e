#!/usr/bin/env bash
# Builds the Horovod 0.28.1 wheel (PyTorch + Gloo; no MPI, TensorFlow or MXNet) against the torch in a venv, once.
#
#   deploy/horovod/build-wheel.sh [VENV]      # prints the wheel's path; `make setup` runs it and installs the wheel
#
# Horovod 0.28.1 is the last release. Its CMakeLists.txt and horovod/torch/CMakeLists.txt ask for C++14, which
# current torch headers do not compile with: this script raises the core to C++17 and the torch extension to what
# the installed torch's headers require (C++17, or C++20 for recent torch such as 2.15) in a copy of the PyPI sdist. The wheel is cached outside the repository under
# ${BOTTEGA_WHEEL_CACHE:-~/.cache/bottega/wheels}, keyed by the Python and torch versions and this script's hash;
# later runs print the cached path in a second. Needs a C++ compiler, make and CMake (`make setup` installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=${1:-.venv}
PY="$VENV/bin/python"
VERSION=0.28.1
[ -x "$PY" ] || { echo "build-wheel: no virtual environment at $VENV (run make setup)" >&2; exit 1; }
for tool in cmake make g++; do
  command -v "$tool" >/dev/null || { echo "build-wheel: $tool is missing: apt-get install -y cmake g++ make" >&2; exit 1; }
done

torch_version=$("$PY" -c 'import torch; print(torch.__version__)')
py_version=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
script_hash=$(sha256sum "$0" | cut -c1-10)
cache="${BOTTEGA_WHEEL_CACHE:-$HOME/.cache/bottega/wheels}/horovod-$VERSION-py$py_version-torch${torch_version//+/_}-$script_hash"
found=$(ls "$cache"/horovod-*.whl 2>/dev/null | head -1 || true)
if [ -n "$found" ]; then
  echo "$found"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "build-wheel: building Horovod $VERSION for torch $torch_version (several minutes, once)" >&2
"$PY" -m pip download -q --no-deps --no-binary :all: "horovod==$VERSION" -d "$work" >&2
tar xzf "$work/horovod-$VERSION.tar.gz" -C "$work"
src="$work/horovod-$VERSION"
# Horovod's core needs C++17; its torch extension needs what torch's headers need (C++20 from torch 2.10 or so).
torch_cxx=17
torch_headers=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')
if grep -rqs "C++20 or later" "$torch_headers/torch/csrc/api/include/torch/all.h" "$torch_headers/ATen/ATen.h"; then
  torch_cxx=20
fi
raise_standard() {
  grep -q 'set(CMAKE_CXX_STANDARD 14)' "$1" || { echo "build-wheel: $1 no longer asks for C++14" >&2; exit 1; }
  sed -i "s/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD $2)/" "$1"
}
raise_standard "$src/CMakeLists.txt" 17
raise_standard "$src/horovod/torch/CMakeLists.txt" "$torch_cxx"
# Build dependencies of the sdist, into the venv (the build runs without isolation to see the venv's torch).
"$VENV/bin/uv" pip install --python "$PY" -q -c requirements/constraints.txt cloudpickle psutil pyyaml packaging >&2
HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
  HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=GLOO HOROVOD_BUILD_ARCH_FLAGS="" \
  MAKEFLAGS="-j${BOTTEGA_BUILD_JOBS:-2}" \
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$src" >&2
mkdir -p "$(dirname "$cache")"
staging="$cache.tmp-$$"
mkdir -p "$staging"
cp "$work"/dist/horovod-*.whl "$staging/"
rm -rf "$cache"
mv "$staging" "$cache"
ls "$cache"/horovod-*.whl
