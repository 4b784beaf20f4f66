// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * TURN ChannelData (RFC 8656 section 12) for the fast path: a 4-byte header (channel number, data
 * length) between the UDP header and the data. Over UDP the data is not padded.
 *
 * The header is added and removed by moving the payload, never the UDP header: a datagram WireGuard
 * sent through lo carries CHECKSUM_PARTIAL, whose csum_start the kernel keeps at the UDP header's
 * place in the buffer, so a UDP header that moved (bpf_skb_adjust_room at the network header) would
 * be checksummed from the wrong offset. Moving 1.5 kB in a few helper calls costs far less than the
 * trip through user space it replaces.
 */
#ifndef TUNNELBORE_CHANNEL_DATA_H
#define TUNNELBORE_CHANNEL_DATA_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IP_OFF ETH_HLEN
#define UDP_OFF (ETH_HLEN + sizeof(struct iphdr))
#define PAYLOAD_OFF (UDP_OFF + sizeof(struct udphdr))
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define IP_LEN_OFF (IP_OFF + offsetof(struct iphdr, tot_len))
#define UDP_CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))
#define UDP_LEN_OFF (UDP_OFF + offsetof(struct udphdr, len))

#define CHANNEL_HLEN 4
/* The payload moved in chunks of this size, at most this many (larger datagrams stay in user space). */
#define MOVE_CHUNK 256
#define MOVE_CHUNKS 8
#define CHANNEL_PAYLOAD_MAX (MOVE_CHUNK * MOVE_CHUNKS - CHANNEL_HLEN)

/* Moves `len` payload bytes at `from` by CHANNEL_HLEN towards the tail (grow) or the head (shrink). */
static __always_inline int move_payload(struct __sk_buff *skb, __u32 from, __u32 len, int grow)
{
	__u8 buf[MOVE_CHUNK];
	__u32 done = 0;

	for (int i = 0; i < MOVE_CHUNKS; i++) {
		if (done >= len)
			break;
		__u64 n = len - done;
		if (n > MOVE_CHUNK)
			n = MOVE_CHUNK;
		/* Tells the verifier what the comparison above already says: 0 <= n <= MOVE_CHUNK. */
		asm volatile("%0 &= 0x1ff" : "+r"(n));
		if (n > MOVE_CHUNK)
			return -1;
		/* Growing copies the last chunk first, shrinking the first: no chunk overwrites unread bytes. */
		__u32 off = grow ? from + len - done - n : from + done;
		__u32 to = grow ? off + CHANNEL_HLEN : off - CHANNEL_HLEN;
		if (n == 0 || bpf_skb_load_bytes(skb, off, buf, n) ||
		    bpf_skb_store_bytes(skb, to, buf, n, BPF_F_RECOMPUTE_CSUM))
			return -1;
		done += n;
	}
	return done == len ? 0 : -1;
}

/* Sets the IP total length and the UDP length for a payload of `len`, fixing both checksums. */
static __always_inline int set_lengths(struct __sk_buff *skb, __u32 old_len, __u32 len, int udp_csum)
{
	__u16 old_ip = bpf_htons(sizeof(struct iphdr) + sizeof(struct udphdr) + old_len);
	__u16 new_ip = bpf_htons(sizeof(struct iphdr) + sizeof(struct udphdr) + len);
	__u16 old_udp = bpf_htons(sizeof(struct udphdr) + old_len);
	__u16 new_udp = bpf_htons(sizeof(struct udphdr) + len);

	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_ip, new_ip, 2) ||
	    bpf_skb_store_bytes(skb, IP_LEN_OFF, &new_ip, 2, 0))
		return -1;
	/* The UDP length counts twice: in the header and in the pseudo-header. */
	if (udp_csum && (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_udp, new_udp, BPF_F_MARK_MANGLED_0 | 2) ||
			 bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old_udp, new_udp,
					     BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 2)))
		return -1;
	return bpf_skb_store_bytes(skb, UDP_LEN_OFF, &new_udp, 2, 0);
}

/* Puts a ChannelData header (channel in network byte order) before the `len` bytes of payload. */
static __always_inline int channel_data_push(struct __sk_buff *skb, __u16 channel, __u32 len, int udp_csum)
{
	__u16 header[2] = { channel, bpf_htons(len) };
	__u32 header_word = *(__u32 *)header;

	if (bpf_skb_change_tail(skb, PAYLOAD_OFF + len + CHANNEL_HLEN, 0) ||
	    move_payload(skb, PAYLOAD_OFF, len, 1) ||
	    bpf_skb_store_bytes(skb, PAYLOAD_OFF, header, CHANNEL_HLEN, BPF_F_RECOMPUTE_CSUM))
		return -1;
	/* The payload moved by an even offset, so its sum is unchanged but for the new header. */
	if (udp_csum && bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, header_word, BPF_F_MARK_MANGLED_0 | 4))
		return -1;
	return set_lengths(skb, len, len + CHANNEL_HLEN, udp_csum);
}

/* Takes the ChannelData header off a payload of `len` bytes (header included). */
static __always_inline int channel_data_pop(struct __sk_buff *skb, __u16 channel, __u32 len, int udp_csum)
{
	__u16 header[2] = { channel, bpf_htons(len - CHANNEL_HLEN) };
	__u32 header_word = *(__u32 *)header;

	if (udp_csum && bpf_l4_csum_replace(skb, UDP_CSUM_OFF, header_word, 0, BPF_F_MARK_MANGLED_0 | 4))
		return -1;
	/*
	 * CHECKSUM_COMPLETE (skb->csum, the sum of the received data): the payload's moves and the trimmed
	 * tail are accounted by the helpers, the UDP checksum's own rise by the header's sum is not.
	 * No-op for every other checksum state.
	 */
	if (udp_csum)
		bpf_csum_update(skb, bpf_csum_diff(NULL, 0, &header_word, sizeof(header_word), 0));
	if (move_payload(skb, PAYLOAD_OFF + CHANNEL_HLEN, len - CHANNEL_HLEN, 0) ||
	    set_lengths(skb, len, len - CHANNEL_HLEN, udp_csum))
		return -1;
	return bpf_skb_change_tail(skb, PAYLOAD_OFF + len - CHANNEL_HLEN, 0);
}

#endif
