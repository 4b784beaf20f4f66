#!/usr/bin/env bash
# Compiles the kernel fast path (used by `tunnelbore run --ebpf`) into dist/ebpf/. Without clang it
# says so and succeeds: everything but --ebpf works without it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/ebpf
if ! command -v clang >/dev/null; then
  echo "clang not found: skipping the eBPF fast path (tunnelbore run --ebpf will be unavailable)" >&2
  exit 0
fi
clang -O2 -g -Wall -Werror -target bpf -I"/usr/include/$(uname -m)-linux-gnu" \
  -c ebpf/fast-path.bpf.c -o dist/ebpf/fast-path.bpf.o
