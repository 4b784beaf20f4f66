/*
 * udp-flood: a load generator and sink for the forwarding benchmark, fast enough to find the kernel fast
 * path's limit (Node's dgram tops out near 130k datagrams/s here, below the 200k target it must show).
 * Written by hand because no packaged tool sends WireGuard-shaped datagrams from a chosen source port
 * with a closed window: iperf3 and trafgen pick their own ports or need a raw socket.
 *
 *   udp-flood SRC_ADDR SRC_PORT DST_ADDR DST_PORT SINK_ADDR SINK_PORT SIZE WARMUP_MS MS
 *
 * One thread sends type-4 datagrams (04 00 00 00, then filler) from SRC to DST with sendmmsg, keeping at
 * most WINDOW in flight (sent - received); another receives at SINK with recvmmsg. When nothing arrives
 * for STALL_MS, what is in flight is presumed lost so a drop cannot stall the run. The received rate is
 * counted over MS after WARMUP_MS. Prints one JSON line: rate, sent, received, lost, cpu_us.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32
#define WINDOW 512
#define STALL_MS 50
#define MAX_SIZE 65507
#define SOCKET_BUFFER (8 << 20)

static atomic_ulong sent;
static atomic_ulong received;
static atomic_ulong presumed_lost;
static atomic_int running = 1;
static atomic_int receiving = 1;
static size_t size;

static void die(const char *what)
{
	fprintf(stderr, "udp-flood: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct sockaddr_in address(const char *addr, const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		fprintf(stderr, "udp-flood: not an IPv4 address: %s\n", addr);
		exit(2);
	}
	return sa;
}

static int bound_socket(struct sockaddr_in sa)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket");
	int buffer = SOCKET_BUFFER;
	/* The FORCE variants pass net.core.[rw]mem_max (we run as root), so the buffer is what we ask. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)) &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer)))
		die("SO_RCVBUF");
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof(buffer)) &&
	    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer)))
		die("SO_SNDBUF");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("bind");
	/* Lets the receiver look at `running` now and then instead of blocking forever. */
	struct timeval tv = { .tv_sec = 0, .tv_usec = 10000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

struct sender_args {
	int fd;
	struct sockaddr_in to;
};

static void *send_loop(void *p)
{
	struct sender_args *a = p;
	static uint8_t payload[MAX_SIZE];
	memset(payload, 0xa5, size);
	payload[0] = 4;
	payload[1] = payload[2] = payload[3] = 0;
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){ .iov_base = payload, .iov_len = size };
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_name = &a->to, .msg_namelen = sizeof(a->to), .msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	double last_progress = now_ms();
	unsigned long last_received = 0;
	while (atomic_load(&running)) {
		unsigned long in_flight = atomic_load(&sent) - atomic_load(&received) - atomic_load(&presumed_lost);
		if (in_flight + BATCH > WINDOW) {
			unsigned long r = atomic_load(&received);
			double t = now_ms();
			if (r != last_received) {
				last_received = r;
				last_progress = t;
			} else if (t - last_progress > STALL_MS) {
				atomic_store(&presumed_lost, atomic_load(&sent) - r);
				last_progress = t;
			}
			/* Sleep, not spin: a spinning generator would take the core the forwarder needs. */
			usleep(20);
			continue;
		}
		int n = sendmmsg(a->fd, msgs, BATCH, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR)
				continue;
			die("sendmmsg");
		}
		atomic_fetch_add(&sent, (unsigned long)n);
	}
	return NULL;
}

static void *receive_loop(void *p)
{
	int fd = *(int *)p;
	static uint8_t buffers[BATCH][2048];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){ .iov_base = buffers[i], .iov_len = sizeof(buffers[i]) };
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	while (atomic_load(&receiving)) {
		int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				continue;
			die("recvmmsg");
		}
		unsigned long ok = 0;
		for (int i = 0; i < n; i++)
			ok += msgs[i].msg_len == size;
		atomic_fetch_add(&received, ok);
	}
	return NULL;
}

static double cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

int main(int argc, char **argv)
{
	if (argc != 10) {
		fprintf(stderr, "usage: udp-flood SRC_ADDR SRC_PORT DST_ADDR DST_PORT SINK_ADDR SINK_PORT SIZE WARMUP_MS MS\n");
		return 2;
	}
	size = (size_t)atol(argv[7]);
	if (size < 4 || size > 2048) {
		fprintf(stderr, "udp-flood: SIZE must be 4..2048\n");
		return 2;
	}
	double warmup = atof(argv[8]), duration = atof(argv[9]);
	/* The window's short sleeps (20 us) should not be stretched to the default 50 us slack. */
	prctl(PR_SET_TIMERSLACK, 1000UL);
	struct sender_args sender = { .fd = bound_socket(address(argv[1], argv[2])), .to = address(argv[3], argv[4]) };
	int sink = bound_socket(address(argv[5], argv[6]));

	pthread_t tx, rx;
	if (pthread_create(&rx, NULL, receive_loop, &sink) || pthread_create(&tx, NULL, send_loop, &sender)) {
		fprintf(stderr, "udp-flood: pthread_create failed\n");
		return 1;
	}
	usleep((useconds_t)(warmup * 1000));
	unsigned long start_count = atomic_load(&received);
	double start = now_ms(), start_cpu = cpu_us();
	usleep((useconds_t)(duration * 1000));
	unsigned long count = atomic_load(&received) - start_count;
	double elapsed = now_ms() - start, cpu = cpu_us() - start_cpu;
	atomic_store(&running, 0);
	pthread_join(tx, NULL);
	/* Drain: what is still on its way counts as delivered, the rest as lost. */
	usleep(200000);
	atomic_store(&receiving, 0);
	pthread_join(rx, NULL);
	unsigned long s = atomic_load(&sent), r = atomic_load(&received);
	printf("{\"rate\":%.1f,\"sent\":%lu,\"received\":%lu,\"lost\":%lu,\"cpuUsPerDatagram\":%.3f}\n",
	       count / elapsed * 1000, s, r, s - r, count ? cpu / count : 0.0);
	return 0;
}
