// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Tunnelbore's kernel fast path: forwards WireGuard transport messages (type 4) between WireGuard's
 * loopback endpoint L(P) and the peer's UDP path without a trip through user space. Handshakes,
 * cookies, STUN and anything unexpected go on to the sockets unchanged (TC_ACT_OK), so Tunnelbore
 * still sees and checks them. One program, attached at tc ingress of lo and of each uplink:
 *
 *  - outbound: WireGuard (127.x.x.x:wg_port) -> L(P). Rewritten to the path's own socket address ->
 *    the peer's remote address, and redirected out of the uplink (the neighbour subsystem fills in
 *    the MAC addresses), or into lo when the peer is on this host.
 *  - inbound: the peer's remote address -> the path's socket address. Rewritten to L(P) ->
 *    127.0.0.1:wg_port and redirected into lo, so WireGuard sees the datagram come from L(P), exactly
 *    as when Tunnelbore's socket sends it.
 *
 * The maps are filled by Tunnelbore (src/proxy/kernel-fast-path.ts); every address and port in them
 * is in network byte order. Counters let user space see the traffic it no longer handles.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define WG_TRANSPORT 4
/* Header (16) and an empty payload's Poly1305 tag (16): anything shorter is not a transport message. */
#define WG_TRANSPORT_MIN 32
#define IP_OFF ETH_HLEN
#define UDP_OFF (ETH_HLEN + sizeof(struct iphdr))
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_SRC_OFF (IP_OFF + offsetof(struct iphdr, saddr))
#define IP_DST_OFF (IP_OFF + offsetof(struct iphdr, daddr))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))
#define UDP_SPORT_OFF (UDP_OFF + offsetof(struct udphdr, source))
#define UDP_DPORT_OFF (UDP_OFF + offsetof(struct udphdr, dest))

/* Outbound entry flag: the remote is on this host, so the datagram goes into lo, not out of ifindex. */
#define OUT_TO_LOOPBACK 1

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
	__u32 pad;
	__u64 packets;
	__u64 bytes;
};

struct inbound_key {
	__u32 local_addr;
	__u32 remote_addr;
	__u16 local_port;
	__u16 remote_port;
};

struct inbound_value {
	__u32 loopback_addr;
	__u16 loopback_port;
	__u16 wireguard_port;
	__u32 loopback_ifindex;
	__u32 pad;
	__u64 packets;
	__u64 bytes;
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

static const __u8 zero_macs[2 * ETH_ALEN];

/* Replaces a 4-byte address and fixes the IP checksum and, when the sender set one, the UDP checksum. */
static __always_inline int rewrite_addr(struct __sk_buff *skb, __u32 off, __u32 from, __u32 to, int udp_csum)
{
	if (from == to)
		return 0;
	if (udp_csum &&
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, from, to, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4))
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, from, to, 4))
		return -1;
	return bpf_skb_store_bytes(skb, off, &to, 4, 0);
}

static __always_inline int rewrite_port(struct __sk_buff *skb, __u32 off, __u16 from, __u16 to, int udp_csum)
{
	if (from == to)
		return 0;
	if (udp_csum && bpf_l4_csum_replace(skb, UDP_CSUM_OFF, from, to, BPF_F_MARK_MANGLED_0 | 2))
		return -1;
	return bpf_skb_store_bytes(skb, off, &to, 2, 0);
}

static __always_inline int rewrite(struct __sk_buff *skb, __u32 saddr, __u32 daddr, __u16 sport, __u16 dport,
				   __u32 new_saddr, __u32 new_daddr, __u16 new_sport, __u16 new_dport, int udp_csum)
{
	if (rewrite_addr(skb, IP_SRC_OFF, saddr, new_saddr, udp_csum) ||
	    rewrite_addr(skb, IP_DST_OFF, daddr, new_daddr, udp_csum) ||
	    rewrite_port(skb, UDP_SPORT_OFF, sport, new_sport, udp_csum) ||
	    rewrite_port(skb, UDP_DPORT_OFF, dport, new_dport, udp_csum))
		return -1;
	return 0;
}

SEC("tc")
int tunnelbore_fast_path(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + IP_OFF;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *payload = data + UDP_OFF + sizeof(struct udphdr);

	if ((void *)(payload + 4) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	/* Fragments carry no UDP header of their own: leave them to the stack. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return TC_ACT_OK;
	if (payload[0] != WG_TRANSPORT || payload[1] || payload[2] || payload[3])
		return TC_ACT_OK;
	__u16 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(struct udphdr) + WG_TRANSPORT_MIN)
		return TC_ACT_OK;

	__u32 saddr = ip->saddr, daddr = ip->daddr;
	__u16 sport = udp->source, dport = udp->dest;
	int udp_csum = udp->check != 0;
	__u64 len = udp_len - sizeof(struct udphdr);

	struct outbound_key okey = { .loopback_addr = daddr, .loopback_port = dport };
	struct outbound_value *out = bpf_map_lookup_elem(&tb_outbound, &okey);
	/* Only WireGuard's own datagrams: from this host's loopback, from its listen port. */
	if (out && (bpf_ntohl(saddr) >> 24) == 127 && sport == out->wireguard_port) {
		if (rewrite(skb, saddr, daddr, sport, dport, out->local_addr, out->remote_addr, out->local_port,
			    out->remote_port, udp_csum))
			return TC_ACT_SHOT;
		__sync_fetch_and_add(&out->packets, 1);
		__sync_fetch_and_add(&out->bytes, len);
		/*
		 * The remote is on this host: WireGuard's datagram came through lo with its local route still
		 * attached, and that route delivers to the new destination as well. Going on (not redirecting)
		 * matters: a redirect drops the route, and the lookup that follows rejects a source that is an
		 * address of this host (127.0.0.1) as martian.
		 */
		if (out->flags & OUT_TO_LOOPBACK)
			return TC_ACT_OK;
		return bpf_redirect_neigh(out->ifindex, NULL, 0, 0);
	}

	struct inbound_key ikey = { .local_addr = daddr, .remote_addr = saddr, .local_port = dport, .remote_port = sport };
	struct inbound_value *in = bpf_map_lookup_elem(&tb_inbound, &ikey);
	if (!in)
		return TC_ACT_OK;
	if (rewrite(skb, saddr, daddr, sport, dport, in->loopback_addr, bpf_htonl(0x7f000001), in->loopback_port,
		    in->wireguard_port, udp_csum))
		return TC_ACT_SHOT;
	__sync_fetch_and_add(&in->packets, 1);
	__sync_fetch_and_add(&in->bytes, len);
	/* From a peer on this host: already in lo with a local route, as above. */
	if (skb->ifindex == in->loopback_ifindex)
		return TC_ACT_OK;
	/* lo's own address is all zeros: with any other destination MAC the stack would drop it as not ours. */
	bpf_skb_store_bytes(skb, 0, zero_macs, sizeof(zero_macs), 0);
	return bpf_redirect(in->loopback_ifindex, BPF_F_INGRESS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
