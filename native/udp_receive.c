// Receive: recvmmsg into the socket's slots, GRO messages split into their segments, one Buffer a
// round to JS with the datagrams' offsets, lengths and sources in the shared meta array.
#include "batched_udp.h"

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
    struct msghdr* h = &s->m->rmsgs[i].msg_hdr;
    s->m->riov[i].iov_base = s->rslots + (size_t)i * SLOT;
    s->m->riov[i].iov_len = SLOT;
    h->msg_iov = &s->m->riov[i];
    h->msg_iovlen = 1;
    h->msg_name = &s->m->raddr[i];
    h->msg_namelen = sizeof s->m->raddr[i];
    h->msg_control = s->gro ? s->m->rctrl[i] : NULL;
    h->msg_controllen = s->gro ? sizeof s->m->rctrl[i] : 0;
    h->msg_flags = 0;
  }
  int n;
  do n = recvmmsg(s->fd, s->m->rmsgs, BATCH, MSG_DONTWAIT, NULL);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) budp_report_error(s, errno, "recvmmsg");
    return 0;
  }
  size_t total = 0;
  for (int i = 0; i < n; i++) total += s->m->rmsgs[i].msg_len;

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
    size_t len = s->m->rmsgs[i].msg_len;
    const char* src = s->rslots + (size_t)i * SLOT;
    memcpy((char*)data + offset, src, len);
    int seg = s->gro ? gro_segment_size(&s->m->rmsgs[i].msg_hdr) : 0;
    if (seg <= 0 || (size_t)seg >= len) {
      count += put_meta(s, count, (int32_t)offset, (int32_t)len, &s->m->raddr[i]);
    } else {
      for (size_t at = 0; at < len; at += (size_t)seg) {
        size_t piece = len - at < (size_t)seg ? len - at : (size_t)seg;
        count += put_meta(s, count, (int32_t)(offset + at), (int32_t)piece, &s->m->raddr[i]);
      }
    }
    offset += len;
  }
  napi_value argv[2] = {buffer, NULL};
  napi_create_int32(env, count, &argv[1]);
  budp_call_js(s, s->on_batch, argv);
  napi_close_handle_scope(env, scope);
  return n;
}

void budp_on_readable(uv_poll_t* handle, int status, int events) {
  udp_socket* s = (udp_socket*)handle->data;
  if (s->closed) return;
  if (status < 0) {
    budp_report_error(s, -status, "poll");
    return;
  }
  // Bounded, so other sockets and timers get their turn; epoll is level-triggered and calls again.
  for (int round = 0; round < RECV_ROUNDS && !s->closed; round++) {
    if (receive_round(s) < BATCH) break;
  }
}
