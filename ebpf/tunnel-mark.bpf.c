// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Gives every socket Tunnelbore creates the WireGuard interface's fwmark, as SO_MARK gives WireGuard's
 * own socket: with wg-quick's full tunnel (`not fwmark M table M`) unmarked traffic is routed into the
 * tunnel, and Tunnelbore's paths, ICE/STUN/TURN, WebSocket and DNS sockets must stay outside it.
 *
 * Attached at cgroup/sock_create of a cgroup v2 that holds only Tunnelbore (src/wg/tunnel-bypass.ts),
 * it runs when an inet socket (IPv4 or IPv6, any protocol) is created there, before any route lookup,
 * so the source address and the route of connect() and sendmsg() both follow the mark. The mark comes
 * from a one-entry map that Tunnelbore updates when the interface's fwmark changes; 0 leaves the
 * socket alone. Sockets that exist already keep their mark: Tunnelbore replaces them after a change.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} tunnel_mark SEC(".maps");

SEC("cgroup/sock_create")
int tunnelbore_mark(struct bpf_sock *sk) {
  __u32 key = 0;
  __u32 *mark = bpf_map_lookup_elem(&tunnel_mark, &key);
  if (mark && *mark)
    sk->mark = *mark;
  return 1; /* allow the socket */
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
