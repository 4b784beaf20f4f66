// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Tunnelbore's kernel fast path: forwards WireGuard transport messages (type 4) between WireGuard's
 * loopback endpoint L(P) and the peer's UDP path without a trip through user space. Handshakes,
 * cookies, STUN, TURN control and anything unexpected go on unchanged (TC_ACT_UNSPEC: the next tc
 * filter, e.g. another instance's, still sees them), so Tunnelbore still sees and checks them. One
 * program per instance, attached at tc ingress of lo and of each uplink (and a second one at lo's
 * egress, for IPv6 paths: see tunnelbore_fast_path_egress):
 *
 *  - outbound: WireGuard (127.x.x.x:wg_port) -> L(P). Rewritten to the path's own socket address ->
 *    the peer's remote address, and redirected out of the uplink (the neighbour subsystem fills in
 *    the MAC addresses), or into lo when the peer is on this host. On a relayed path (OUT_CHANNEL)
 *    the remote is the TURN server and the message gets a ChannelData header (RFC 8656 section 12).
 *  - inbound: the peer's remote address -> the path's socket address (for a relayed path: ChannelData
 *    from the TURN server on the bound channel, which loses its header). Rewritten to L(P) ->
 *    127.0.0.1:wg_port and redirected into lo, so WireGuard sees the datagram come from L(P), exactly
 *    as when Tunnelbore's socket sends it.
 *
 * The maps are filled by Tunnelbore (ebpf/loader.ts); every address and port in them is in network
 * byte order. Counters let user space see the traffic it no longer handles. The owner's heartbeat
 * (tb_owner, written every second) must be fresh: a killed instance's entries stop forwarding.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "channel-data.h"

#define WG_TRANSPORT 4
/* Header (16) and an empty payload's Poly1305 tag (16): anything shorter is not a transport message. */
#define WG_TRANSPORT_MIN 32
/* The owner writes its heartbeat every second; silent for this long, it is taken for dead. */
#define OWNER_STALE_NS (3ULL * 1000000000ULL)

/*
 * Outbound entry flags: the remote is on this host (into lo, not out of ifindex); relayed by channel;
 * an IPv6 path's next_hop is set (ipv6.h).
 */
#define OUT_TO_LOOPBACK 1
#define OUT_CHANNEL 2
#define OUT_NEXT_HOP 4

struct outbound_key {
	__u32 loopback_addr;
	__u16 loopback_port;
	__u16 pad;
};

struct outbound_value {
	__u32 local_addr;
	__u32 remote_addr;
	__u16 local_port;
	__u16 remote_port;
	__u16 wireguard_port;
	__u16 flags;
	__u32 ifindex;
	__u16 channel; /* network byte order, with OUT_CHANNEL */
	__u16 pad;
	__u64 packets;
	__u64 bytes;
	/* CLOCK_MONOTONIC ns of the latest datagram: liveness needs when, not only how many. */
	__u64 last_ns;
};

/* channel is 0 for a plain UDP path, the bound channel (network byte order) for a relayed one. */
struct inbound_key {
	__u32 local_addr;
	__u32 remote_addr;
	__u16 local_port;
	__u16 remote_port;
	__u16 channel;
	__u16 pad;
};

/* Inbound entry flags: deliver as IPv6, from [::1]:loopback_port to [::1]:wireguard_port (ipv6.h). */
#define IN_LOOPBACK6 1

struct inbound_value {
	__u32 loopback_addr; /* 0 with IN_LOOPBACK6 */
	__u16 loopback_port;
	__u16 wireguard_port;
	__u32 loopback_ifindex;
	__u16 flags;
	__u16 pad;
	__u64 packets;
	__u64 bytes;
	/* CLOCK_MONOTONIC ns of the latest datagram: liveness needs when, not only how many. */
	__u64 last_ns;
};

/* Who owns this program's entries: user space's heartbeat (CLOCK_MONOTONIC ns), its PID, tc pref. */
struct owner {
	__u64 heartbeat_ns;
	__u32 pid;
	__u16 pref;
	__u16 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct outbound_key);
	__type(value, struct outbound_value);
} tb_outbound SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct inbound_key);
	__type(value, struct inbound_value);
} tb_inbound SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owner);
} tb_owner SEC(".maps");

/*
 * The clock of every stamp: CLOCK_MONOTONIC as of the last tick (a few ms behind at most). It is read
 * per datagram, and the precise clock costs a TSC read; liveness and the owner's heartbeat count in
 * seconds. Needs Linux 5.11 (and bpf_check_mtu 5.12); an older kernel refuses the program and `auto`
 * forwards in user space.
 */
#define tb_now() bpf_ktime_get_coarse_ns()

static __always_inline int owner_alive(void)
{
	__u32 zero = 0;
	struct owner *o = bpf_map_lookup_elem(&tb_owner, &zero);
	/* Signed: a heartbeat written since the last tick is ahead of the coarse clock. */
	return o && (__s64)(tb_now() - o->heartbeat_ns) < (__s64)OWNER_STALE_NS;
}

/* A UDP header's two ports as one word, for one checksum update and one store. */
union udp_ports {
	__u16 port[2];
	__u32 word;
};

/*
 * Rewrites an IPv4 datagram's addresses and ports. The checksums take three updates (the IP header,
 * the UDP pseudo-header's addresses, the ports as one word: a CHECKSUM_PARTIAL datagram's UDP field
 * holds only the pseudo-header, so that helper leaves it alone); the fields are written directly, as
 * a helper call per field cost more than the fields. With CHECKSUM_COMPLETE each field's change is
 * offset by its checksum's, so skb->csum stays right (the pseudo-header's own share is the helper's).
 */
static __always_inline int rewrite(struct __sk_buff *skb, __u32 saddr, __u32 daddr, __u16 sport, __u16 dport,
				   __u32 new_saddr, __u32 new_daddr, __u16 new_sport, __u16 new_dport, int udp_csum)
{
	__u32 from[2] = { saddr, daddr }, to[2] = { new_saddr, new_daddr };
	union udp_ports ports_from = { .port = { sport, dport } }, ports_to = { .port = { new_sport, new_dport } };
	__s64 diff = bpf_csum_diff(from, sizeof(from), to, sizeof(to), 0);
	if (diff < 0 || bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, diff, 0))
		return -1;
	if (udp_csum &&
	    (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, diff, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
	     bpf_l4_csum_replace(skb, UDP_CSUM_OFF, ports_from.word, ports_to.word, BPF_F_MARK_MANGLED_0 | 4)))
		return -1;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + IP_OFF;
	union udp_ports *ports = data + UDP_OFF;
	if ((void *)(ports + 1) > data_end)
		return -1;
	ip->saddr = new_saddr;
	ip->daddr = new_daddr;
	ports->word = ports_to.word;
	return 0;
}

/*
 * Into lo's ingress, as from L(P) to WireGuard: an IPv4 (or IPv6) frame to lo's own address, all zeros
 * (with any other destination MAC the stack would drop it as not ours). The MAC header is outside
 * skb->csum, so it is written directly whatever the checksum state.
 */
static __always_inline int into_loopback(struct __sk_buff *skb, __u32 loopback_ifindex, __u16 proto)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	__builtin_memset(eth, 0, 2 * ETH_ALEN);
	eth->h_proto = proto;
	return bpf_redirect(loopback_ifindex, BPF_F_INGRESS);
}

/* True when the four bytes are a transport message's type and reserved zeros. */
static __always_inline int is_transport(const __u8 *p)
{
	return p[0] == WG_TRANSPORT && !p[1] && !p[2] && !p[3];
}

/*
 * A UDP payload of `len` bytes starting with `p` that the fast path may carry: a transport message
 * (channel 0), or ChannelData whose data is exactly one (its channel, network byte order). -1: neither.
 */
static __always_inline int payload_channel(const __u8 *p, __u32 len)
{
	if (is_transport(p))
		return 0;
	/* ChannelData: first two bits 01. Over UDP no padding follows the data (RFC 8656 section 12.5). */
	if ((p[0] & 0xc0) != 0x40 || !is_transport(p + CHANNEL_HLEN))
		return -1;
	__u32 data_len = ((__u32)p[2] << 8) | p[3];
	if (data_len + CHANNEL_HLEN != len || data_len < WG_TRANSPORT_MIN || len > CHANNEL_PAYLOAD_MAX)
		return -1;
	return *(__u16 *)p;
}

/*
 * True when WireGuard's IPv4 datagram (`len` bytes of UDP payload), `grow` bytes longer and with an IP
 * header of `ip_hlen`, fits the uplink's MTU. One that does not goes on to L(P)'s socket: user space
 * sends it and the kernel fragments it, as it would WireGuard's own datagram. Redirected, it would be
 * dropped (a redirect skips IP fragmentation). The helper is given the IP length, not the frame's: lo's
 * MAC header says nothing of an uplink without one (PPP, a tun). A GSO buffer passes the helper as a
 * whole: its segments are what the uplink sends.
 */
static __always_inline int fits_uplink(struct __sk_buff *skb, __u32 ifindex, __u32 len, __s32 grow, __u32 ip_hlen)
{
	__u32 mtu = sizeof(struct iphdr) + sizeof(struct udphdr) + len;
	if (bpf_check_mtu(skb, ifindex, &mtu, grow, 0))
		return 0;
	return !skb->gso_size || skb->gso_size + sizeof(struct udphdr) + ip_hlen <= mtu;
}

/* IPv6 paths: 4<->6 translation at the edges, or IPv6 end to end where WireGuard's side is [::1]. */
#include "ipv6.h"

/* WireGuard's datagram to L(P): on to the peer (or its TURN server), rewritten as the entry says. */
static __always_inline int outbound(struct __sk_buff *skb, struct outbound_value *out, __u32 saddr, __u32 daddr,
				    __u16 sport, __u16 dport, int udp_csum, __u32 len)
{
	if (!owner_alive())
		return TC_ACT_UNSPEC;
	if (out->flags & OUT_CHANNEL) {
		/* GSO carries many datagrams in one buffer, each needing a header of its own: user space. */
		if (skb->gso_size || len > CHANNEL_PAYLOAD_MAX)
			return TC_ACT_UNSPEC;
	}
	if (!(out->flags & OUT_TO_LOOPBACK) &&
	    !fits_uplink(skb, out->ifindex, len, out->flags & OUT_CHANNEL ? CHANNEL_HLEN : 0, sizeof(struct iphdr)))
		return TC_ACT_UNSPEC;
	if (out->flags & OUT_CHANNEL) {
		if (channel_data_push(skb, out->channel, len, udp_csum))
			return TC_ACT_SHOT;
	}
	if (rewrite(skb, saddr, daddr, sport, dport, out->local_addr, out->remote_addr, out->local_port,
		    out->remote_port, udp_csum))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&out->packets, 1);
	__sync_fetch_and_add(&out->bytes, len);
	out->last_ns = tb_now();
	/*
	 * The remote is on this host: WireGuard's datagram came through lo with its local route still
	 * attached, and that route delivers to the new destination as well. Going on (not redirecting)
	 * matters: a redirect drops the route, and the lookup that follows rejects a source that is an
	 * address of this host (127.0.0.1) as martian.
	 */
	if (out->flags & OUT_TO_LOOPBACK)
		return TC_ACT_OK;
	/*
	 * No next hop here (unlike IPv6 paths, ipv6.h): the datagram still carries its route on lo, which only
	 * the kernel's own lookup replaces. Given a next hop, the kernel keeps that route, and a datagram
	 * held while the neighbour is resolved is sent by it once resolved (the neighbour looked up again
	 * through the datagram's route: lo's, all-zero MAC) and lost; test/integration/kernel-next-hop.test.ts.
	 */
	return bpf_redirect_neigh(out->ifindex, NULL, 0, 0);
}

/* The peer's datagram (already stripped of any ChannelData header): to WireGuard from L(P). */
static __always_inline int inbound(struct __sk_buff *skb, struct inbound_value *in, __u32 saddr, __u32 daddr,
				   __u16 sport, __u16 dport, int udp_csum, __u32 len)
{
	if (rewrite(skb, saddr, daddr, sport, dport, in->loopback_addr, bpf_htonl(0x7f000001), in->loopback_port,
		    in->wireguard_port, udp_csum))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&in->packets, 1);
	__sync_fetch_and_add(&in->bytes, len);
	in->last_ns = tb_now();
	/* From a peer on this host: already in lo with a local route, as above. */
	if (skb->ifindex == in->loopback_ifindex)
		return TC_ACT_OK;
	return into_loopback(skb, in->loopback_ifindex, bpf_htons(ETH_P_IP));
}

/* An IPv4 UDP datagram as the fast path reads it: addresses and ports in network byte order. */
struct udp4 {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	int udp_csum;
	/* UDP payload length; channel: 0 for a transport message, a bound channel's number, -1 neither. */
	__u32 len;
	int channel;
};

/*
 * Reads an IPv4 UDP datagram carrying a transport message or ChannelData, its IP header at `ip_off`
 * (ETH_HLEN, or 0 at an uplink without a MAC header); 0 when it is one.
 */
static __always_inline int read_udp4_at(struct __sk_buff *skb, struct udp4 *d, __u32 ip_off)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ip_off;
	struct udphdr *udp = data + ip_off + sizeof(struct iphdr);
	__u8 *payload = data + ip_off + sizeof(struct iphdr) + sizeof(struct udphdr);

	if ((void *)(payload + CHANNEL_HLEN + 4) > data_end)
		return -1;
	if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return -1;
	/* Fragments carry no UDP header of their own: leave them to the stack. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return -1;
	__u16 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(struct udphdr) + WG_TRANSPORT_MIN)
		return -1;
	d->saddr = ip->saddr;
	d->daddr = ip->daddr;
	d->sport = udp->source;
	d->dport = udp->dest;
	d->udp_csum = udp->check != 0;
	d->len = udp_len - sizeof(struct udphdr);
	d->channel = payload_channel(payload, d->len);
	return d->channel < 0 ? -1 : 0;
}

#define read_udp4(skb, d) read_udp4_at(skb, d, IP_OFF)

/* The inbound entry's key of the peer's datagram `d`. */
static __always_inline struct inbound_key inbound_key_of(const struct udp4 *d)
{
	struct inbound_key key = { .local_addr = d->daddr,
				   .remote_addr = d->saddr,
				   .local_port = d->dport,
				   .remote_port = d->sport,
				   .channel = d->channel };
	return key;
}

/* True when the datagram is from this host's loopback, where WireGuard's own datagrams come from. */
static __always_inline int from_loopback(const struct udp4 *d)
{
	return (bpf_ntohl(d->saddr) >> 24) == 127;
}

/*
 * True when the destination may be an L(P): those skip 127.0.0.0/24 (src/proxy/loopback-address.ts),
 * so what we deliver to WireGuard at 127.0.0.1, passing lo's ingress again, costs no outbound lookups.
 */
static __always_inline int may_be_loopback_endpoint(const struct udp4 *d)
{
	return (bpf_ntohl(d->daddr) >> 8) != 0x7f0000;
}

/* At tc ingress of lo and of each uplink with a MAC header: everything the fast path carries. */
static __always_inline int fast_path(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return fast_path6(skb);
	struct udp4 d;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || read_udp4(skb, &d))
		return TC_ACT_UNSPEC;

	if (d.channel == 0 && from_loopback(&d) && may_be_loopback_endpoint(&d)) {
		struct outbound_key okey = { .loopback_addr = d.daddr, .loopback_port = d.dport };
		/* Only WireGuard's own datagrams: its listen port checked as well. */
		struct outbound_value *out = bpf_map_lookup_elem(&tb_outbound, &okey);
		if (out && d.sport == out->wireguard_port)
			return outbound(skb, out, d.saddr, d.daddr, d.sport, d.dport, d.udp_csum, d.len);
		/* Usually translated at lo's egress already (below); here when that filter is missing. */
		struct outbound6_value *out6 = bpf_map_lookup_elem(&tb_outbound6, &okey);
		if (out6 && d.sport == out6->wireguard_port)
			return outbound6(skb, out6, d.saddr, d.daddr, d.sport, d.dport, d.udp_csum, d.len);
	}

	struct inbound_key ikey = inbound_key_of(&d);
	struct inbound_value *in = bpf_map_lookup_elem(&tb_inbound, &ikey);
	if (!in || !owner_alive())
		return TC_ACT_UNSPEC;
	__u32 len = d.len;
	if (d.channel) {
		if (skb->gso_size)
			return TC_ACT_UNSPEC;
		if (channel_data_pop(skb, d.channel, len, d.udp_csum))
			return TC_ACT_SHOT;
		len -= CHANNEL_HLEN;
	}
	return inbound(skb, in, d.saddr, d.daddr, d.sport, d.dport, d.udp_csum, len);
}

SEC("tc")
int tunnelbore_fast_path(struct __sk_buff *skb)
{
	return fast_path(skb);
}

/*
 * At tc ingress of an uplink without a MAC header (PPP, a tun, a raw-IP modem): the datagram starts at
 * its IP header. One the fast path carries (an inbound entry has its key) gets a MAC header in front,
 * as bpf_skb_change_head is meant for, and goes the Ethernet way (into_loopback writes the header's
 * addresses). Anything else is left as it came: the stack of such a device reads no MAC header.
 */
SEC("tc")
int tunnelbore_fast_path_l3(struct __sk_buff *skb)
{
	int ours = 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct udp4 d;
		if (!read_udp4_at(skb, &d, 0)) {
			struct inbound_key key = inbound_key_of(&d);
			ours = bpf_map_lookup_elem(&tb_inbound, &key) != NULL;
		}
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct udp6 d;
		ours = !read_udp6_at(skb, &d, 0) && !skb->gso_size && bpf_map_lookup_elem(&tb_inbound6, &d.key) != NULL;
	}
	if (!ours || !owner_alive())
		return TC_ACT_UNSPEC;
	/* On failure the helper changed nothing. */
	if (bpf_skb_change_head(skb, ETH_HLEN, 0))
		return TC_ACT_UNSPEC;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	eth->h_proto = skb->protocol; /* the helper zeroed the addresses */
	int verdict = fast_path(skb);
	/* Not carried after all (its entry went meanwhile): with a MAC header the stack here cannot read it. */
	return verdict == TC_ACT_UNSPEC ? TC_ACT_SHOT : verdict;
}

/*
 * At lo's egress, one step before its ingress: WireGuard's datagrams to an L(P) whose path is IPv6, and
 * to an L6(P). The IPv6 header needs 20 bytes more head than lo's buffers have, so the kernel reallocates
 * the head. Here the datagram still belongs to WireGuard's socket, and the larger buffer is not charged
 * to it (pskb_expand_head keeps an owned skb's truesize); at lo's ingress it is charged, and the receiving
 * socket's buffer then holds half as many datagrams (4,352 bytes each instead of 2,304, measured on
 * wireguard-go's socket): more drops, and TCP in the tunnel slows down. And sent on from here, a datagram
 * skips lo's receive side (its backlog queue and a softirq pass) altogether: sent on from lo's ingress,
 * WireGuard's datagrams to L6(P) measured 0.90 of translated ones at lo's egress where the CPU was the
 * limit. Everything else: ingress.
 */
SEC("tc")
int tunnelbore_fast_path_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct udp4 d;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct udp6 d6;
		if (read_udp6_at(skb, &d6, IP6_OFF) || !between_loopback6(&d6))
			return TC_ACT_UNSPEC;
		return from_wireguard6(skb, &d6);
	}
	if (eth->h_proto != bpf_htons(ETH_P_IP) || read_udp4(skb, &d) || d.channel != 0 || !from_loopback(&d))
		return TC_ACT_UNSPEC;
	struct outbound_key okey = { .loopback_addr = d.daddr, .loopback_port = d.dport };
	struct outbound6_value *out6 = bpf_map_lookup_elem(&tb_outbound6, &okey);
	if (!out6 || d.sport != out6->wireguard_port)
		return TC_ACT_UNSPEC;
	return outbound6(skb, out6, d.saddr, d.daddr, d.sport, d.dport, d.udp_csum, d.len);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
