#!/usr/bin/env bash
# Installs the Debian packages Tunnelbore's tests, demo and benchmarks use, when any is missing.
set -euo pipefail
packages=(wireguard-go wireguard-tools nftables iproute2 iputils-ping iperf3 coturn conntrack procps
  clang libbpf-dev linux-libc-dev bpftool openssl util-linux systemd socat redis-server nats-server ethtool)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root (sudo) to install them" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# coturn, redis-server and nats-server packages enable a system service on some images; the tests and
# benchmarks start their own, on free loopback ports, by PID, and never use those.
