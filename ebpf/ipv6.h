// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * IPv6 paths for the fast path (included by fast-path.bpf.c after its helpers). Where WireGuard's side
 * is IPv4 loopback (L(P), 127.x: a relayed path, or WireGuard without an IPv6 socket), the datagram
 * changes protocol at the edge:
 *
 *  - outbound: WireGuard's IPv4 datagram to L(P) (ChannelData added first when relayed) becomes IPv6
 *    from the path's socket to the remote: bpf_skb_change_proto makes room after the MAC header, so
 *    the UDP header keeps its place in the buffer (CHECKSUM_PARTIAL's csum_start stays right), and
 *    the UDP checksum trades the IPv4 pseudo-header addresses for the IPv6 ones (a checksum is
 *    mandatory in IPv6: a datagram without one stays in user space). Redirected to the next hop user
 *    space learnt from `ip route get` where it gave one (no route lookup per datagram).
 *  - inbound: the reverse, then ChannelData stripped with IPv4 offsets, then into lo as from L(P).
 *
 * Where it is IPv6 loopback (L6(P), [::1]:port: a plain UDP path over IPv6), nothing changes protocol:
 * WireGuard's datagram from [::1] to L6(P) gets the path's addresses and ports (tb_outbound6lo), and the
 * peer's gets [::1] and L6(P)'s port (an inbound entry flagged IN_LOOPBACK6). Against the translation
 * that measured 1.01-1.12 with the packaged wireguard-go, whose receiver drops at speed, and level with
 * 7 MiB buffers (docs/benchmarks.md, "L6(P)"); it also spares the head reallocation per datagram.
 */
#ifndef TUNNELBORE_IPV6_H
#define TUNNELBORE_IPV6_H

#include <linux/ipv6.h>

#define IP6_OFF ETH_HLEN
#define IP6_ADDRS_OFF (IP6_OFF + offsetof(struct ipv6hdr, saddr))
#define UDP6_OFF (ETH_HLEN + sizeof(struct ipv6hdr))
#define PAYLOAD6_OFF (UDP6_OFF + sizeof(struct udphdr))
#define UDP6_CSUM_OFF (UDP6_OFF + offsetof(struct udphdr, check))
#define HOP_LIMIT 64
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* Keyed like tb_outbound (L(P)); local then remote address, adjacent: the pseudo-header's order. */
struct outbound6_value {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 wireguard_port;
	__u16 flags;
	__u32 ifindex;
	__u16 channel;
	__u16 pad;
	__u64 packets;
	__u64 bytes;
	/* CLOCK_MONOTONIC ns of the latest datagram: liveness needs when, not only how many. */
	__u64 last_ns;
	/* With OUT_NEXT_HOP: the route's gateway, or the remote itself on the link (`ip route get`). */
	__u8 next_hop[16];
};

struct inbound6_key {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u16 channel;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct outbound_key);
	__type(value, struct outbound6_value);
} tb_outbound6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct inbound6_key);
	__type(value, struct inbound_value);
} tb_inbound6 SEC(".maps");

/* L6(P): an IPv6 loopback address (always ::1 today) and port, in network byte order. */
struct loopback6_key {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
};

/* Outbound entries of plain UDP paths over IPv6 whose WireGuard side is L6(P) (no channel, no next hop). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct loopback6_key);
	__type(value, struct outbound6_value);
} tb_outbound6lo SEC(".maps");

/* Folds a 32-bit one's complement sum into a 16-bit checksum. */
static __always_inline __u16 csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* WireGuard's IPv4 datagram to L(P) -> IPv6 from the path's socket to the peer (or its TURN server). */
static __always_inline int outbound6(struct __sk_buff *skb, struct outbound6_value *out, __u32 saddr, __u32 daddr,
				     __u16 sport, __u16 dport, int udp_csum, __u32 len)
{
	if (!owner_alive())
		return TC_ACT_UNSPEC;
	if (!udp_csum || skb->gso_size || ((out->flags & OUT_CHANNEL) && len > CHANNEL_PAYLOAD_MAX))
		return TC_ACT_UNSPEC;
	/* The IPv6 header is 20 bytes longer than the IPv4 one it replaces. */
	__s32 grow = sizeof(struct ipv6hdr) - sizeof(struct iphdr) + (out->flags & OUT_CHANNEL ? CHANNEL_HLEN : 0);
	if (!fits_uplink(skb, out->ifindex, len, grow, sizeof(struct ipv6hdr)))
		return TC_ACT_UNSPEC;
	__u32 udp_len = sizeof(struct udphdr) + len;
	if (out->flags & OUT_CHANNEL) {
		if (channel_data_push(skb, out->channel, len, udp_csum))
			return TC_ACT_SHOT;
		udp_len += CHANNEL_HLEN;
	}
	/*
	 * Two checksum updates: the pseudo-header's addresses (IPv4's out, IPv6's in), then both ports as one
	 * word (not in the pseudo-header, so the helper leaves a CHECKSUM_PARTIAL datagram's field alone).
	 * Everything else is written directly: a helper call per field cost more than the fields.
	 */
	__u32 v4[2] = { saddr, daddr };
	__s64 diff = bpf_csum_diff(v4, sizeof(v4), (__be32 *)out->local_addr, 32, 0);
	union udp_ports from = { .port = { sport, dport } }, to = { .port = { out->local_port, out->remote_port } };
	if (diff < 0 || bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, diff, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, from.word, to.word, BPF_F_MARK_MANGLED_0 | 4))
		return TC_ACT_SHOT;
	if (bpf_skb_change_proto(skb, bpf_htons(ETH_P_IPV6), 0))
		return TC_ACT_SHOT;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = data + IP6_OFF;
	union udp_ports *ports = data + UDP6_OFF;
	if ((void *)(ports + 1) > data_end)
		return TC_ACT_SHOT;
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	*(__be32 *)ip6 = bpf_htonl(6 << 28); /* version 6, traffic class and flow label 0 */
	ip6->payload_len = bpf_htons(udp_len);
	ip6->nexthdr = IPPROTO_UDP;
	ip6->hop_limit = HOP_LIMIT;
	__builtin_memcpy(&ip6->saddr, out->local_addr, 16);
	__builtin_memcpy(&ip6->daddr, out->remote_addr, 16);
	ports->word = to.word;
	__sync_fetch_and_add(&out->packets, 1);
	__sync_fetch_and_add(&out->bytes, len);
	out->last_ns = tb_now();
	/*
	 * With the next hop user space learnt with the ifindex (and renews with it), the kernel skips its
	 * IPv6 route lookup per datagram (ip6_dst_lookup_flow) and only asks the neighbour table. Safe here,
	 * unlike IPv4 paths (outbound()): bpf_skb_change_proto dropped the IPv4 route the datagram had on lo
	 * (kernels with "net: clear the dst when changing skb protocol", 6.16 and stable updates since 2025),
	 * so a datagram held while the neighbour is resolved is sent to the neighbour, not to lo's route's.
	 */
	if (out->flags & OUT_NEXT_HOP) {
		struct bpf_redir_neigh nh = { .nh_family = AF_INET6 };
		__builtin_memcpy(nh.ipv6_nh, out->next_hop, 16);
		return bpf_redirect_neigh(out->ifindex, &nh, sizeof(nh), 0);
	}
	return bpf_redirect_neigh(out->ifindex, NULL, 0, 0);
}

/* An IPv6 UDP datagram as the fast path reads it: its inbound key, UDP payload length and channel. */
struct udp6 {
	struct inbound6_key key;
	__u32 len;
	int channel;
};

/*
 * Reads an IPv6 UDP datagram carrying a transport message or ChannelData, its IP header at `ip_off`
 * (ETH_HLEN, or 0 at an uplink without a MAC header); 0 when it is one. A GSO buffer is read as one
 * datagram: inbound, the caller leaves it to the stack (a GRO'd train needs splitting first).
 */
static __always_inline int read_udp6_at(struct __sk_buff *skb, struct udp6 *d, __u32 ip_off)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ip_off;
	struct udphdr *udp = data + ip_off + sizeof(struct ipv6hdr);
	__u8 *payload = data + ip_off + sizeof(struct ipv6hdr) + sizeof(struct udphdr);

	if ((void *)(payload + CHANNEL_HLEN + 4) > data_end)
		return -1;
	/* No extension headers (fragments included): those stay with the stack. */
	if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP || !udp->check)
		return -1;
	__u32 udp_len = bpf_ntohs(udp->len);
	if (udp_len != bpf_ntohs(ip6->payload_len) || udp_len < sizeof(struct udphdr) + WG_TRANSPORT_MIN)
		return -1;
	d->len = udp_len - sizeof(struct udphdr);
	d->channel = payload_channel(payload, d->len);
	if (d->channel < 0)
		return -1;
	__builtin_memset(&d->key, 0, sizeof(d->key));
	d->key.local_port = udp->dest;
	d->key.remote_port = udp->source;
	d->key.channel = d->channel;
	__builtin_memcpy(d->key.local_addr, &ip6->daddr, 16);
	__builtin_memcpy(d->key.remote_addr, &ip6->saddr, 16);
	return 0;
}

/* True when the 16 bytes are ::1. */
static __always_inline int is_loopback6(const __u8 *addr)
{
	const __u32 *w = (const __u32 *)addr;
	return !w[0] && !w[1] && !w[2] && w[3] == bpf_htonl(1);
}

/*
 * Rewrites an IPv6 datagram's addresses (`to`: the new saddr then daddr; `from`: the old ones, in either
 * order, the sum does not mind) and ports, its IPv6 header at IP6_OFF. The UDP checksum takes two
 * updates, as in rewrite(); the fields are written directly. With CHECKSUM_COMPLETE, skb->csum needs the
 * addresses' change added back: the helper took the pseudo-header's out of it, as IPv4 wants (there the
 * IP header's checksum offsets the addresses), and IPv6 has no such field (bpf_csum_update: COMPLETE only).
 */
static __always_inline int rewrite6(struct __sk_buff *skb, const __u8 *from, const __u8 *to, __u32 ports_from,
				    __u32 ports_to)
{
	__s64 diff = bpf_csum_diff((__be32 *)from, 32, (__be32 *)to, 32, 0);
	if (diff < 0 || bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, diff, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, ports_from, ports_to, BPF_F_MARK_MANGLED_0 | 4))
		return -1;
	bpf_csum_update(skb, diff);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + IP6_OFF;
	union udp_ports *ports = data + UDP6_OFF;
	if ((void *)(ports + 1) > data_end)
		return -1;
	__builtin_memcpy(&ip6->saddr, to, 32);
	ports->word = ports_to;
	return 0;
}

/* WireGuard's IPv6 datagram from [::1] to L6(P) (`d`): on to the peer, from the path's socket. */
static __always_inline int outbound6_native(struct __sk_buff *skb, struct outbound6_value *out, struct udp6 *d)
{
	if (!owner_alive())
		return TC_ACT_UNSPEC;
	/* fits_uplink counts from an IPv4 header: 20 bytes more for IPv6's. */
	if (!fits_uplink(skb, out->ifindex, d->len, sizeof(struct ipv6hdr) - sizeof(struct iphdr),
			 sizeof(struct ipv6hdr)))
		return TC_ACT_UNSPEC;
	union udp_ports from = { .port = { d->key.remote_port, d->key.local_port } },
			to = { .port = { out->local_port, out->remote_port } };
	if (rewrite6(skb, d->key.local_addr, out->local_addr, from.word, to.word))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&out->packets, 1);
	__sync_fetch_and_add(&out->bytes, d->len);
	out->last_ns = tb_now();
	/*
	 * No next hop: the datagram carries lo's route, which a redirect with one would keep (a datagram held
	 * while the neighbour resolves would then be sent by it and lost: fast-path.bpf.c's outbound()).
	 * Without one, the kernel's lookup replaces it.
	 */
	return bpf_redirect_neigh(out->ifindex, NULL, 0, 0);
}

/* The peer's datagram `d` on a plain UDP path whose WireGuard side is L6(P): into lo, from L6(P). */
static __always_inline int inbound6_native(struct __sk_buff *skb, struct inbound_value *in, struct udp6 *d)
{
	if (d->channel)
		return TC_ACT_UNSPEC;
	/* [::1] as saddr and as daddr (on the stack: tc's loader takes no global data). */
	__u32 loopbacks[8] = { 0, 0, 0, bpf_htonl(1), 0, 0, 0, bpf_htonl(1) };
	union udp_ports from = { .port = { d->key.remote_port, d->key.local_port } },
			to = { .port = { in->loopback_port, in->wireguard_port } };
	if (rewrite6(skb, d->key.local_addr, (const __u8 *)loopbacks, from.word, to.word))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&in->packets, 1);
	__sync_fetch_and_add(&in->bytes, d->len);
	in->last_ns = tb_now();
	if (skb->ifindex == in->loopback_ifindex)
		return TC_ACT_OK;
	return into_loopback(skb, in->loopback_ifindex, bpf_htons(ETH_P_IPV6));
}

/* The peer's IPv6 datagram `d` (transport message, or ChannelData on a bound channel) -> WireGuard. */
static __always_inline int inbound6(struct __sk_buff *skb, struct udp6 *d)
{
	if (skb->gso_size)
		return TC_ACT_UNSPEC;
	struct inbound6_key *key = &d->key;
	__u32 len = d->len, udp_len = sizeof(struct udphdr) + d->len;
	int channel = d->channel;
	__u16 sport = key->remote_port, dport = key->local_port;
	struct inbound_value *in = bpf_map_lookup_elem(&tb_inbound6, key);
	if (!in || !owner_alive())
		return TC_ACT_UNSPEC;
	if (in->flags & IN_LOOPBACK6)
		return inbound6_native(skb, in, d);

	/* The IPv6 pseudo-header's addresses out, L(P) and 127.0.0.1 in (lengths and protocol are alike). */
	__u8 v6[32];
	__builtin_memcpy(v6, key->remote_addr, 16);
	__builtin_memcpy(v6 + 16, key->local_addr, 16);
	__u32 v4[2] = { in->loopback_addr, bpf_htonl(0x7f000001) };
	__s64 diff = bpf_csum_diff((__be32 *)v6, sizeof(v6), v4, sizeof(v4), 0);
	/*
	 * The ports as one word, written directly: with CHECKSUM_COMPLETE the check field's change offsets
	 * theirs, so skb->csum stays right without a recompute (as it did with a store per port).
	 */
	union udp_ports from = { .port = { sport, dport } },
			to = { .port = { in->loopback_port, in->wireguard_port } };
	if (diff < 0 || bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, 0, diff, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
	    bpf_l4_csum_replace(skb, UDP6_CSUM_OFF, from.word, to.word, BPF_F_MARK_MANGLED_0 | 4))
		return TC_ACT_SHOT;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	union udp_ports *ports = data + UDP6_OFF;
	if ((void *)(ports + 1) > data_end)
		return TC_ACT_SHOT;
	ports->word = to.word;
	if (bpf_skb_change_proto(skb, bpf_htons(ETH_P_IP), 0))
		return TC_ACT_SHOT;
	struct iphdr ip = {
		.version = 4,
		.ihl = 5,
		.tot_len = bpf_htons(sizeof(struct iphdr) + udp_len),
		.ttl = HOP_LIMIT,
		.protocol = IPPROTO_UDP,
		.saddr = v4[0],
		.daddr = v4[1],
	};
	ip.check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&ip, sizeof(ip), 0));
	/* RECOMPUTE: with CHECKSUM_COMPLETE, skb->csum covered the IPv6 header's last 20 bytes, now these. */
	if (bpf_skb_store_bytes(skb, IP_OFF, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;
	if (channel) {
		if (channel_data_pop(skb, channel, len, 1))
			return TC_ACT_SHOT;
		len -= CHANNEL_HLEN;
	}
	__sync_fetch_and_add(&in->packets, 1);
	__sync_fetch_and_add(&in->bytes, len);
	in->last_ns = tb_now();
	return into_loopback(skb, in->loopback_ifindex, bpf_htons(ETH_P_IP));
}

/* True when the datagram goes between two [::1] endpoints: WireGuard's to an L6(P), or ours to WireGuard. */
static __always_inline int between_loopback6(const struct udp6 *d)
{
	return is_loopback6(d->key.remote_addr) && is_loopback6(d->key.local_addr);
}

/* A datagram `d` between two [::1] endpoints: on to the peer when it is WireGuard's to an L6(P). */
static __always_inline int from_wireguard6(struct __sk_buff *skb, struct udp6 *d)
{
	if (d->channel)
		return TC_ACT_UNSPEC;
	struct loopback6_key okey = { .port = d->key.local_port };
	__builtin_memcpy(okey.addr, d->key.local_addr, 16);
	struct outbound6_value *out = bpf_map_lookup_elem(&tb_outbound6lo, &okey);
	/* Only WireGuard's own datagrams: its listen port checked as well. */
	if (!out || d->key.remote_port != out->wireguard_port)
		return TC_ACT_UNSPEC;
	return outbound6_native(skb, out, d);
}

/*
 * Every IPv6 datagram at a tc ingress: the peer's (to WireGuard), or WireGuard's from [::1] to an L6(P)
 * (usually sent on at lo's egress already; here when that filter is missing). One between two [::1]
 * endpoints is never a peer's: IPv6 peers on this host stay in user space
 * (src/proxy/kernel-forwarder.ts), so what we deliver to WireGuard, passing lo's ingress again, costs
 * one lookup, not two.
 */
static __always_inline int fast_path6(struct __sk_buff *skb)
{
	struct udp6 d;
	if (read_udp6_at(skb, &d, IP6_OFF))
		return TC_ACT_UNSPEC;
	return between_loopback6(&d) ? from_wireguard6(skb, &d) : inbound6(skb, &d);
}

#endif
