// Batched UDP I/O for Node on Linux: recvmmsg/sendmmsg, UDP GRO on receive and UDP GSO on send where
// the kernel has them, driven by Node's event loop (a uv_poll on the socket; no thread of its own).
// The TypeScript side is src/proxy/batched-udp-native.ts; the interface both it and the dgram fallback
// give is src/proxy/batched-udp.ts.
//
// Receive: one poll wake-up reads up to RECV_ROUNDS x BATCH messages; each round's datagrams (GRO
// messages split into their segments) are packed into one new Buffer and handed to JS with their
// offsets, lengths and sources in a per-environment Int32Array (META_STRIDE ints a datagram), so JS
// allocates one Buffer per round, not per datagram, and may keep views of it.
// Send: `queue` copies a datagram into the socket's send arena (consecutive datagrams of one size to
// one destination become one GSO message); `flush` sends them with sendmmsg. Nothing blocks: a full
// socket buffer drops (as UDP does), and errors are returned, never thrown.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define BATCH 64
#define RECV_ROUNDS 8
#define SLOT 65536
#define META_STRIDE 8
/* A GRO message holds at most 64 segments (UDP_MAX_SEGMENTS in older kernels; newer ones allow more,
 * but a round never yields more datagrams than this: messages beyond it wait for the next round). */
#define META_CAPACITY (BATCH * 64)
#define MAX_GSO_SEGMENTS 64
#define MAX_GSO_BYTES 65000
#define SEND_ARENA (BATCH * SLOT)

typedef struct {
  napi_ref meta_ref;
  int32_t* meta;
} env_state;

typedef struct {
  uv_poll_t poll;
  int fd;
  int family;
  int closed;
  /* The memory goes when both libuv is done with the poll handle and JS's external is collected. */
  int handle_closed;
  int finalized;
  int gso;
  int gro;
  napi_env env;
  env_state* state;
  napi_ref on_batch;
  napi_ref on_error;
  napi_async_context async;
  /* receive */
  char* rslots;
  struct mmsghdr rmsgs[BATCH];
  struct iovec riov[BATCH];
  struct sockaddr_storage raddr[BATCH];
  char rctrl[BATCH][CMSG_SPACE(sizeof(int))];
  /* send */
  char* sarena;
  size_t sused;
  int scount;
  struct mmsghdr smsgs[BATCH];
  struct iovec siov[BATCH];
  struct sockaddr_storage saddr[BATCH];
  uint16_t sseg[BATCH];
  int snseg[BATCH];
  char sctrl[BATCH][CMSG_SPACE(sizeof(uint16_t))];
  /* the last destination parsed, so a flow's address string is parsed once */
  char last_host[64];
  int last_port;
  struct sockaddr_storage last_dest;
  socklen_t last_dest_len;
} udp_socket;

#define CHECK(call)                                                                                          \
  do {                                                                                                       \
    if ((call) != napi_ok) {                                                                                 \
      napi_throw_error(env, "ERR_NATIVE", "N-API call failed: " #call);                                      \
      return NULL;                                                                                           \
    }                                                                                                        \
  } while (0)

static napi_value throw_errno(napi_env env, int err, const char* syscall) {
  char message[128];
  snprintf(message, sizeof message, "%s %s", syscall, uv_err_name(-err));
  napi_throw_error(env, uv_err_name(-err), message);
  return NULL;
}

static napi_value make_int(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

/* Calls a JS callback from the event loop; what it throws is uncaught, as from a dgram listener. */
static void call_js(udp_socket* s, napi_ref ref, napi_value* argv) {
  napi_value cb, recv, result;
  napi_get_reference_value(s->env, ref, &cb);
  napi_get_global(s->env, &recv);
  if (napi_make_callback(s->env, s->async, recv, cb, 2, argv, &result) == napi_pending_exception) {
    napi_value exc;
    napi_get_and_clear_last_exception(s->env, &exc);
    napi_fatal_exception(s->env, exc);
  }
}

static void report_error(udp_socket* s, int err, const char* syscall) {
  napi_handle_scope scope;
  if (napi_open_handle_scope(s->env, &scope) != napi_ok) return;
  napi_value argv[2];
  napi_create_string_utf8(s->env, uv_err_name(-err), NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_string_utf8(s->env, syscall, NAPI_AUTO_LENGTH, &argv[1]);
  call_js(s, s->on_error, argv);
  napi_close_handle_scope(s->env, scope);
}

/* Writes a datagram's meta entry; returns 0 when the round's meta is full. */
static int put_meta(udp_socket* s, int index, int32_t offset, int32_t length, const struct sockaddr_storage* from) {
  if (index >= META_CAPACITY) return 0;
  int32_t* m = s->state->meta + index * META_STRIDE;
  m[0] = offset;
  m[1] = length;
  if (from->ss_family == AF_INET6) {
    const struct sockaddr_in6* a = (const struct sockaddr_in6*)from;
    uint32_t words[4];
    memcpy(words, &a->sin6_addr, 16);
    m[2] = ntohs(a->sin6_port);
    m[3] = 6;
    for (int i = 0; i < 4; i++) m[4 + i] = (int32_t)ntohl(words[i]);
  } else {
    const struct sockaddr_in* a = (const struct sockaddr_in*)from;
    m[2] = ntohs(a->sin_port);
    m[3] = 4;
    m[4] = (int32_t)ntohl(a->sin_addr.s_addr);
    m[5] = m[6] = m[7] = 0;
  }
  return 1;
}

static int gro_segment_size(struct msghdr* h) {
  for (struct cmsghdr* c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int size;
      memcpy(&size, CMSG_DATA(c), sizeof size);
      return size;
    }
  }
  return 0;
}

/* One recvmmsg and its datagrams to JS. Returns the messages read (0: nothing more now). */
static int receive_round(udp_socket* s) {
  for (int i = 0; i < BATCH; i++) {
    struct msghdr* h = &s->rmsgs[i].msg_hdr;
    s->riov[i].iov_base = s->rslots + (size_t)i * SLOT;
    s->riov[i].iov_len = SLOT;
    h->msg_iov = &s->riov[i];
    h->msg_iovlen = 1;
    h->msg_name = &s->raddr[i];
    h->msg_namelen = sizeof s->raddr[i];
    h->msg_control = s->gro ? s->rctrl[i] : NULL;
    h->msg_controllen = s->gro ? sizeof s->rctrl[i] : 0;
    h->msg_flags = 0;
  }
  int n;
  do n = recvmmsg(s->fd, s->rmsgs, BATCH, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) report_error(s, errno, "recvmmsg");
    return 0;
  }
  size_t total = 0;
  for (int i = 0; i < n; i++) total += s->rmsgs[i].msg_len;

  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return 0;
  napi_value buffer;
  void* data;
  if (napi_create_buffer(env, total, &data, &buffer) != napi_ok) {
    napi_close_handle_scope(env, scope);
    return 0;
  }
  int count = 0;
  size_t offset = 0;
  for (int i = 0; i < n; i++) {
    size_t len = s->rmsgs[i].msg_len;
    const char* src = s->rslots + (size_t)i * SLOT;
    memcpy((char*)data + offset, src, len);
    int seg = s->gro ? gro_segment_size(&s->rmsgs[i].msg_hdr) : 0;
    if (seg <= 0 || (size_t)seg >= len) {
      count += put_meta(s, count, (int32_t)offset, (int32_t)len, &s->raddr[i]);
    } else {
      for (size_t at = 0; at < len; at += (size_t)seg) {
        size_t piece = len - at < (size_t)seg ? len - at : (size_t)seg;
        count += put_meta(s, count, (int32_t)(offset + at), (int32_t)piece, &s->raddr[i]);
      }
    }
    offset += len;
  }
  napi_value argv[2] = {buffer, NULL};
  napi_create_int32(env, count, &argv[1]);
  call_js(s, s->on_batch, argv);
  napi_close_handle_scope(env, scope);
  return n;
}

static void on_readable(uv_poll_t* handle, int status, int events) {
  udp_socket* s = (udp_socket*)handle->data;
  if (s->closed) return;
  if (status < 0) {
    report_error(s, -status, "poll");
    return;
  }
  // Bounded, so other sockets and timers get their turn; epoll is level-triggered and calls again.
  for (int round = 0; round < RECV_ROUNDS && !s->closed; round++) {
    if (receive_round(s) < BATCH) break;
  }
}

static void free_socket(udp_socket* s) {
  free(s->rslots);
  free(s->sarena);
  free(s);
}

static void on_handle_closed(uv_handle_t* handle) {
  udp_socket* s = (udp_socket*)handle->data;
  s->handle_closed = 1;
  if (s->finalized) free_socket(s);
}

static void close_socket(udp_socket* s) {
  if (s->closed) return;
  s->closed = 1;
  uv_poll_stop(&s->poll);
  napi_delete_reference(s->env, s->on_batch);
  napi_delete_reference(s->env, s->on_error);
  napi_async_destroy(s->env, s->async);
  uv_close((uv_handle_t*)&s->poll, on_handle_closed);
  // At once, as dgram's close does, so the address can be bound again right away; a stopped poll
  // handle no longer watches the fd.
  close(s->fd);
}

static void finalize_socket(napi_env env, void* data, void* hint) {
  udp_socket* s = (udp_socket*)data;
  s->finalized = 1;
  if (!s->closed) close_socket(s);
  else if (s->handle_closed) free_socket(s);
}

static udp_socket* unwrap(napi_env env, napi_value value) {
  udp_socket* s = NULL;
  if (napi_get_value_external(env, value, (void**)&s) != napi_ok || !s) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a batched UDP socket");
    return NULL;
  }
  return s;
}

static int parse_destination(udp_socket* s, const char* host, int port, struct sockaddr_storage* out, socklen_t* len) {
  memset(out, 0, sizeof *out);
  if (s->family == 6) {
    struct sockaddr_in6* a = (struct sockaddr_in6*)out;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
      // A dotted IPv4 destination on an IPv6 socket: its v4-mapped form, as dgram accepts it.
      char mapped[80];
      snprintf(mapped, sizeof mapped, "::ffff:%s", host);
      if (inet_pton(AF_INET6, mapped, &a->sin6_addr) != 1) return EINVAL;
    }
    *len = sizeof *a;
  } else {
    struct sockaddr_in* a = (struct sockaddr_in*)out;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return EINVAL;
    *len = sizeof *a;
  }
  return 0;
}

/* Sends the queued messages; returns 0 or the errno of the first failure (the failed message is dropped). */
static int flush_socket(udp_socket* s) {
  int first_error = 0;
  int at = 0;
  while (at < s->scount) {
    int n;
    do n = sendmmsg(s->fd, s->smsgs + at, (unsigned)(s->scount - at), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
      at += n;
      continue;
    }
    int err = n < 0 ? errno : EIO;
    if ((err == EINVAL || err == EIO) && s->snseg[at] > 1) {
      // The kernel refused the GSO message (path MTU below the segment size, no checksum offload):
      // no GSO on this socket from now on, and this message goes out one datagram at a time.
      s->gso = 0;
      struct iovec* whole = &s->siov[at];
      size_t seg = s->sseg[at];
      for (size_t off = 0; off < whole->iov_len; off += seg) {
        struct iovec piece = {(char*)whole->iov_base + off, whole->iov_len - off < seg ? whole->iov_len - off : seg};
        struct msghdr h = s->smsgs[at].msg_hdr;
        h.msg_iov = &piece;
        h.msg_iovlen = 1;
        h.msg_control = NULL;
        h.msg_controllen = 0;
        if (sendmsg(s->fd, &h, MSG_DONTWAIT) < 0 && !first_error) first_error = errno;
      }
    } else if (!first_error) {
      first_error = err;
    }
    at++;  // a full buffer or an error drops this message, as a UDP send would
  }
  s->scount = 0;
  s->sused = 0;
  return first_error;
}

/*
 * queue(socket, buffer, port, host, borrowed): 0, or the errno of a flush it had to do first, or of a bad
 * destination. A borrowed datagram is sent from the buffer's own memory, not copied: the caller
 * guarantees it stays alive and unchanged until the next flush (a view of the batch being delivered).
 */
static napi_value js_queue(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = unwrap(env, argv[0]);
  if (!s) return NULL;
  if (s->closed) return make_int(env, EBADF);
  void* data;
  size_t length;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &length));
  int32_t port;
  CHECK(napi_get_value_int32(env, argv[2], &port));
  char host[64];
  size_t host_len;
  CHECK(napi_get_value_string_utf8(env, argv[3], host, sizeof host, &host_len));
  bool borrowed = false;
  if (argc > 4) napi_get_value_bool(env, argv[4], &borrowed);
  if (length > SLOT) return make_int(env, EMSGSIZE);
  if (port != s->last_port || strcmp(host, s->last_host) != 0) {
    int err = parse_destination(s, host, port, &s->last_dest, &s->last_dest_len);
    if (err) {
      s->last_host[0] = 0;
      return make_int(env, err);
    }
    memcpy(s->last_host, host, host_len + 1);
    s->last_port = port;
  }
  int flushed_error = 0;
  if (!borrowed && s->sused + length > SEND_ARENA) flushed_error = flush_socket(s);
  char* dest = borrowed ? (char*)data : s->sarena + s->sused;
  if (s->scount > 0) {
    int p = s->scount - 1;
    struct iovec* prev = &s->siov[p];
    // One more segment of the previous GSO message: same destination, same size (a shorter last one
    // ends it), right after it in memory, within the kernel's limits.
    if (s->gso && length > 0 && s->sseg[p] == length && s->snseg[p] < MAX_GSO_SEGMENTS &&
        prev->iov_len + length <= MAX_GSO_BYTES && (char*)prev->iov_base + prev->iov_len == dest &&
        s->smsgs[p].msg_hdr.msg_namelen == s->last_dest_len &&
        memcmp(&s->saddr[p], &s->last_dest, s->last_dest_len) == 0) {
      if (!borrowed) {
        memcpy(dest, data, length);
        s->sused += length;
      }
      prev->iov_len += length;
      s->snseg[p]++;
      struct msghdr* h = &s->smsgs[p].msg_hdr;
      h->msg_control = s->sctrl[p];
      h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      struct cmsghdr* c = CMSG_FIRSTHDR(h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t seg = (uint16_t)length;
      memcpy(CMSG_DATA(c), &seg, sizeof seg);
      return make_int(env, flushed_error);
    }
  }
  if (s->scount == BATCH) {
    int err = flush_socket(s);
    if (!flushed_error) flushed_error = err;
    if (!borrowed) dest = s->sarena;
  }
  int i = s->scount++;
  if (!borrowed) {
    memcpy(dest, data, length);
    s->sused += length;
  }
  s->siov[i].iov_base = dest;
  s->siov[i].iov_len = length;
  memcpy(&s->saddr[i], &s->last_dest, s->last_dest_len);
  struct msghdr* h = &s->smsgs[i].msg_hdr;
  h->msg_name = &s->saddr[i];
  h->msg_namelen = s->last_dest_len;
  h->msg_iov = &s->siov[i];
  h->msg_iovlen = 1;
  h->msg_control = NULL;
  h->msg_controllen = 0;
  h->msg_flags = 0;
  s->sseg[i] = (uint16_t)length;
  s->snseg[i] = 1;
  return make_int(env, flushed_error);
}

static napi_value js_flush(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = unwrap(env, argv[0]);
  if (!s) return NULL;
  return make_int(env, s->closed ? 0 : flush_socket(s));
}

/* open(family, host, port, receiveBufferBytes, sendBufferBytes, onBatch, onError): the socket, bound. */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t family, port, rcvbuf, sndbuf;
  char host[64];
  CHECK(napi_get_value_int32(env, argv[0], &family));
  CHECK(napi_get_value_string_utf8(env, argv[1], host, sizeof host, NULL));
  CHECK(napi_get_value_int32(env, argv[2], &port));
  CHECK(napi_get_value_int32(env, argv[3], &rcvbuf));
  CHECK(napi_get_value_int32(env, argv[4], &sndbuf));
  env_state* state;
  CHECK(napi_get_instance_data(env, (void**)&state));
  udp_socket* s = calloc(1, sizeof *s);
  if (!s) return throw_errno(env, ENOMEM, "calloc");
  s->family = family == 6 ? 6 : 4;
  s->last_port = -1;
  struct sockaddr_storage local;
  socklen_t local_len;
  if (parse_destination(s, host, port, &local, &local_len)) {
    free(s);
    return throw_errno(env, EINVAL, "bind");
  }
  s->fd = socket(s->family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    int err = errno;
    free(s);
    return throw_errno(env, err, "socket");
  }
  // As dgram does: ask for the size, the kernel caps it at net.core.{r,w}mem_max.
  setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (bind(s->fd, (struct sockaddr*)&local, local_len) < 0) {
    int err = errno;
    close(s->fd);
    free(s);
    return throw_errno(env, err, "bind");
  }
  int on = 1;
  s->gro = setsockopt(s->fd, SOL_UDP, UDP_GRO, &on, sizeof on) == 0;
  // GSO is asked per message; a kernel without it refuses the option's probe with ENOPROTOOPT.
  int seg = 0;
  socklen_t seg_len = sizeof seg;
  s->gso = getsockopt(s->fd, SOL_UDP, UDP_SEGMENT, &seg, &seg_len) == 0;
  s->rslots = malloc((size_t)BATCH * SLOT);
  s->sarena = malloc(SEND_ARENA);
  if (!s->rslots || !s->sarena) {
    close(s->fd);
    free(s->rslots);
    free(s->sarena);
    free(s);
    return throw_errno(env, ENOMEM, "malloc");
  }
  s->env = env;
  s->state = state;
  napi_value resource, name;
  CHECK(napi_create_object(env, &resource));
  CHECK(napi_create_string_utf8(env, "BatchedUdpSocket", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, resource, name, &s->async));
  CHECK(napi_create_reference(env, argv[5], 1, &s->on_batch));
  CHECK(napi_create_reference(env, argv[6], 1, &s->on_error));
  uv_loop_t* loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  uv_poll_init(loop, &s->poll, s->fd);
  s->poll.data = s;
  int rc = uv_poll_start(&s->poll, UV_READABLE, on_readable);
  napi_value external;
  CHECK(napi_create_external(env, s, finalize_socket, NULL, &external));
  if (rc < 0) {
    close_socket(s);
    return throw_errno(env, -rc, "uv_poll_start");
  }
  return external;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = unwrap(env, argv[0]);
  if (s) close_socket(s);
  return NULL;
}

/* ref(socket, on): whether the socket keeps the event loop alive (as dgram's ref/unref). */
static napi_value js_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = unwrap(env, argv[0]);
  bool on;
  CHECK(napi_get_value_bool(env, argv[1], &on));
  if (s && !s->closed) {
    if (on) uv_ref((uv_handle_t*)&s->poll);
    else uv_unref((uv_handle_t*)&s->poll);
  }
  return NULL;
}

/* info(socket): [localAddress, localPort, receiveBufferBytes, sendBufferBytes, gso (0/1), gro (0/1)]. */
static napi_value js_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = unwrap(env, argv[0]);
  if (!s) return NULL;
  if (s->closed) return throw_errno(env, EBADF, "getsockname");
  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  if (getsockname(s->fd, (struct sockaddr*)&local, &len) < 0) return throw_errno(env, errno, "getsockname");
  char host[INET6_ADDRSTRLEN] = "";
  int port;
  if (local.ss_family == AF_INET6) {
    struct sockaddr_in6* a = (struct sockaddr_in6*)&local;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  } else {
    struct sockaddr_in* a = (struct sockaddr_in*)&local;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  }
  int rcv = 0, snd = 0;
  socklen_t optlen = sizeof(int);
  getsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcv, &optlen);
  getsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &snd, &optlen);
  napi_value out, v;
  CHECK(napi_create_array_with_length(env, 6, &out));
  CHECK(napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &v));
  napi_set_element(env, out, 0, v);
  napi_set_element(env, out, 1, make_int(env, port));
  napi_set_element(env, out, 2, make_int(env, rcv));
  napi_set_element(env, out, 3, make_int(env, snd));
  napi_set_element(env, out, 4, make_int(env, s->gso));
  napi_set_element(env, out, 5, make_int(env, s->gro));
  return out;
}

static void free_state(napi_env env, void* data, void* hint) {
  env_state* state = (env_state*)data;
  napi_delete_reference(env, state->meta_ref);
  free(state);
}

NAPI_MODULE_INIT() {
  env_state* state = calloc(1, sizeof *state);
  if (!state) return NULL;
  napi_value meta_buffer, meta;
  void* meta_data;
  CHECK(napi_create_arraybuffer(env, (size_t)META_CAPACITY * META_STRIDE * sizeof(int32_t), &meta_data, &meta_buffer));
  CHECK(napi_create_reference(env, meta_buffer, 1, &state->meta_ref));
  state->meta = (int32_t*)meta_data;
  CHECK(napi_set_instance_data(env, state, free_state, NULL));
  CHECK(napi_create_typedarray(env, napi_int32_array, (size_t)META_CAPACITY * META_STRIDE, meta_buffer, 0, &meta));
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"queue", NULL, js_queue, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, js_flush, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"ref", NULL, js_ref, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, js_info, NULL, NULL, NULL, napi_default, NULL},
      {"meta", NULL, NULL, NULL, NULL, meta, napi_default, NULL},
      {"metaStride", NULL, NULL, NULL, NULL, make_int(env, META_STRIDE), napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
