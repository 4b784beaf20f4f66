#!/usr/bin/env bash
# Compiles the kernel fast path (used by `tunnelbore run --ebpf`) and the full tunnel's socket mark
# (ebpf/tunnel-mark.bpf.c, src/wg/tunnel-bypass.ts) into dist/ebpf/. Without clang it says so and
# succeeds: everything but --ebpf and full tunnels (wg-quick AllowedIPs = 0.0.0.0/0) works without it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/ebpf
if ! command -v clang >/dev/null; then
  echo "clang not found: skipping the eBPF programs (tunnelbore run --ebpf and full tunnels will be unavailable)" >&2
  exit 0
fi
clang -O2 -g -Wall -Werror -target bpf -I"/usr/include/$(uname -m)-linux-gnu" \
  -c ebpf/fast-path.bpf.c -o dist/ebpf/fast-path.bpf.o
clang -O2 -g -Wall -Werror -target bpf -I"/usr/include/$(uname -m)-linux-gnu" \
  -c ebpf/tunnel-mark.bpf.c -o dist/ebpf/tunnel-mark.bpf.o
