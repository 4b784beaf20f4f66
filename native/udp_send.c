// Send: datagrams queued (copied into the arena, or borrowed from the batch being delivered),
// consecutive same-size ones to one destination as one GSO message, sent with sendmmsg.
#include "batched_udp.h"

int budp_parse_destination(udp_socket* s, const char* host, int port, struct sockaddr_storage* out, socklen_t* len) {
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
    do n = sendmmsg(s->fd, s->m->smsgs + at, (unsigned)(s->scount - at), MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
      at += n;
      continue;
    }
    int err = n < 0 ? errno : EIO;
    if ((err == EINVAL || err == EIO || err == EMSGSIZE) && s->m->snseg[at] > 1) {
      // The kernel refused the GSO message (path MTU below the segment size: EMSGSIZE, or EINVAL in
      // older kernels; no checksum offload: EIO): no GSO on this socket from now on, and this message
      // goes out one datagram at a time.
      s->gso = 0;
      struct iovec* whole = &s->m->siov[at];
      size_t seg = s->m->sseg[at];
      for (size_t off = 0; off < whole->iov_len; off += seg) {
        struct iovec piece = {(char*)whole->iov_base + off, whole->iov_len - off < seg ? whole->iov_len - off : seg};
        struct msghdr h = s->m->smsgs[at].msg_hdr;
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
napi_value budp_js_queue(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = budp_unwrap(env, argv[0]);
  if (!s) return NULL;
  if (s->closed) return budp_make_int(env, EBADF);
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
  if (length > SLOT) return budp_make_int(env, EMSGSIZE);
  if (port != s->last_port || strcmp(host, s->last_host) != 0) {
    int err = budp_parse_destination(s, host, port, &s->last_dest, &s->last_dest_len);
    if (err) {
      s->last_host[0] = 0;
      return budp_make_int(env, err);
    }
    memcpy(s->last_host, host, host_len + 1);
    s->last_port = port;
  }
  int flushed_error = 0;
  if (!borrowed && s->sused + length > SEND_ARENA) flushed_error = flush_socket(s);
  char* dest = borrowed ? (char*)data : s->sarena + s->sused;
  if (s->scount > 0) {
    int p = s->scount - 1;
    struct iovec* prev = &s->m->siov[p];
    // One more segment of the previous GSO message: same destination, same size (a shorter last one
    // ends it), right after it in memory, within the kernel's limits.
    if (s->gso && length > 0 && s->m->sseg[p] == length && s->m->snseg[p] < MAX_GSO_SEGMENTS &&
        prev->iov_len + length <= MAX_GSO_BYTES && (char*)prev->iov_base + prev->iov_len == dest &&
        s->m->smsgs[p].msg_hdr.msg_namelen == s->last_dest_len &&
        memcmp(&s->m->saddr[p], &s->last_dest, s->last_dest_len) == 0) {
      if (!borrowed) {
        memcpy(dest, data, length);
        s->sused += length;
      }
      prev->iov_len += length;
      s->m->snseg[p]++;
      struct msghdr* h = &s->m->smsgs[p].msg_hdr;
      h->msg_control = s->m->sctrl[p];
      h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      struct cmsghdr* c = CMSG_FIRSTHDR(h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t seg = (uint16_t)length;
      memcpy(CMSG_DATA(c), &seg, sizeof seg);
      return budp_make_int(env, flushed_error);
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
  s->m->siov[i].iov_base = dest;
  s->m->siov[i].iov_len = length;
  memcpy(&s->m->saddr[i], &s->last_dest, s->last_dest_len);
  struct msghdr* h = &s->m->smsgs[i].msg_hdr;
  h->msg_name = &s->m->saddr[i];
  h->msg_namelen = s->last_dest_len;
  h->msg_iov = &s->m->siov[i];
  h->msg_iovlen = 1;
  h->msg_control = NULL;
  h->msg_controllen = 0;
  h->msg_flags = 0;
  s->m->sseg[i] = (uint16_t)length;
  s->m->snseg[i] = 1;
  return budp_make_int(env, flushed_error);
}

napi_value budp_js_flush(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = budp_unwrap(env, argv[0]);
  if (!s) return NULL;
  return budp_make_int(env, s->closed ? 0 : flush_socket(s));
}
