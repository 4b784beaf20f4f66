// Batched UDP I/O for Node on Linux: recvmmsg/sendmmsg, UDP GRO on receive and UDP GSO on send where
// the kernel has them, driven by Node's event loop (a uv_poll on the socket; no thread of its own).
// The TypeScript side is src/proxy/batched-udp-native.ts; the interface both it and the dgram fallback
// give is src/proxy/batched-udp.ts.
//
// Receive: one poll wake-up reads up to RECV_ROUNDS x BATCH messages; each round's datagrams (GRO
// messages split into their segments) are packed into one new Buffer and handed to JS with their
// offsets, lengths and sources in a per-environment Int32Array (META_STRIDE ints a datagram), so JS
// allocates one Buffer per round, not per datagram, and may keep views of it.
// Send: `queue` copies a datagram into the socket's send arena, or borrows it when it is a view of the
// batch being delivered (consecutive datagrams of one size to one destination become one GSO message);
// `flush` sends them with sendmmsg. Nothing blocks: a full socket buffer drops (as UDP does), and
// errors are returned, never thrown.
// This file: the module, and a socket's open, close and info; udp_receive.c and udp_send.c the rest.
#include "batched_udp.h"

#include <sys/mman.h>

napi_value budp_throw_errno(napi_env env, int err, const char* syscall) {
  char message[128];
  snprintf(message, sizeof message, "%s %s", syscall, uv_err_name(-err));
  napi_throw_error(env, uv_err_name(-err), message);
  return NULL;
}

napi_value budp_make_int(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

/* Calls a JS callback from the event loop; what it throws is uncaught, as from a dgram listener. */
void budp_call_js(udp_socket* s, napi_ref ref, napi_value* argv) {
  napi_value cb, recv, result;
  napi_get_reference_value(s->env, ref, &cb);
  napi_get_global(s->env, &recv);
  if (napi_make_callback(s->env, s->async, recv, cb, 2, argv, &result) == napi_pending_exception) {
    napi_value exc;
    napi_get_and_clear_last_exception(s->env, &exc);
    napi_fatal_exception(s->env, exc);
  }
}

void budp_report_error(udp_socket* s, int err, const char* syscall) {
  napi_handle_scope scope;
  if (napi_open_handle_scope(s->env, &scope) != napi_ok) return;
  napi_value argv[2];
  napi_create_string_utf8(s->env, uv_err_name(-err), NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_string_utf8(s->env, syscall, NAPI_AUTO_LENGTH, &argv[1]);
  budp_call_js(s, s->on_error, argv);
  napi_close_handle_scope(s->env, scope);
}

/*
 * The 4 MiB receive slots and send arena of a socket, mapped without a commit charge: pages cost only
 * when a datagram touches them, and thousands of sockets (a hub's L(P), issue 16) no longer add up to
 * more committed memory than the machine has, which made every fork (`wg`, `ip`) fail with ENOMEM.
 */
static char* map_buffer(size_t size) {
  void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void unmap_buffer(char* p, size_t size) {
  if (p) munmap(p, size);
}

/* The socket's state, and its message headers mapped as its buffers are. */
static udp_socket* map_socket(void) {
  udp_socket* s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->m = (udp_messages*)map_buffer(sizeof(udp_messages));
  if (!s->m) {
    free(s);
    return NULL;
  }
  return s;
}

static void unmap_socket(udp_socket* s) {
  unmap_buffer((char*)s->m, sizeof(udp_messages));
  free(s);
}

static void free_socket(udp_socket* s) {
  unmap_buffer(s->rslots, (size_t)BATCH * SLOT);
  unmap_buffer(s->sarena, SEND_ARENA);
  unmap_socket(s);
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

udp_socket* budp_unwrap(napi_env env, napi_value value) {
  udp_socket* s = NULL;
  if (napi_get_value_external(env, value, (void**)&s) != napi_ok || !s) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not a batched UDP socket");
    return NULL;
  }
  return s;
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
  udp_socket* s = map_socket();
  if (!s) return budp_throw_errno(env, ENOMEM, "calloc");
  s->family = family == 6 ? 6 : 4;
  s->last_port = -1;
  struct sockaddr_storage local;
  socklen_t local_len;
  if (budp_parse_destination(s, host, port, &local, &local_len)) {
    unmap_socket(s);
    return budp_throw_errno(env, EINVAL, "bind");
  }
  s->fd = socket(s->family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    int err = errno;
    unmap_socket(s);
    return budp_throw_errno(env, err, "socket");
  }
  // As dgram does: ask for the size, the kernel caps it at net.core.{r,w}mem_max.
  setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (bind(s->fd, (struct sockaddr*)&local, local_len) < 0) {
    int err = errno;
    close(s->fd);
    unmap_socket(s);
    return budp_throw_errno(env, err, "bind");
  }
  int on = 1;
  s->gro = setsockopt(s->fd, SOL_UDP, UDP_GRO, &on, sizeof on) == 0;
  // GSO is asked per message; a kernel without it refuses the option's probe with ENOPROTOOPT.
  int seg = 0;
  socklen_t seg_len = sizeof seg;
  s->gso = getsockopt(s->fd, SOL_UDP, UDP_SEGMENT, &seg, &seg_len) == 0;
  s->rslots = map_buffer((size_t)BATCH * SLOT);
  s->sarena = map_buffer(SEND_ARENA);
  if (!s->rslots || !s->sarena) {
    close(s->fd);
    unmap_buffer(s->rslots, (size_t)BATCH * SLOT);
    unmap_buffer(s->sarena, SEND_ARENA);
    unmap_socket(s);
    return budp_throw_errno(env, ENOMEM, "malloc");
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
  int rc = uv_poll_start(&s->poll, UV_READABLE, budp_on_readable);
  napi_value external;
  CHECK(napi_create_external(env, s, finalize_socket, NULL, &external));
  if (rc < 0) {
    close_socket(s);
    return budp_throw_errno(env, -rc, "uv_poll_start");
  }
  return external;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = budp_unwrap(env, argv[0]);
  if (s) close_socket(s);
  return NULL;
}

/* ref(socket, on): whether the socket keeps the event loop alive (as dgram's ref/unref). */
static napi_value js_ref(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  udp_socket* s = budp_unwrap(env, argv[0]);
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
  udp_socket* s = budp_unwrap(env, argv[0]);
  if (!s) return NULL;
  if (s->closed) return budp_throw_errno(env, EBADF, "getsockname");
  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  if (getsockname(s->fd, (struct sockaddr*)&local, &len) < 0) return budp_throw_errno(env, errno, "getsockname");
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
  napi_set_element(env, out, 1, budp_make_int(env, port));
  napi_set_element(env, out, 2, budp_make_int(env, rcv));
  napi_set_element(env, out, 3, budp_make_int(env, snd));
  napi_set_element(env, out, 4, budp_make_int(env, s->gso));
  napi_set_element(env, out, 5, budp_make_int(env, s->gro));
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
      {"queue", NULL, budp_js_queue, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, budp_js_flush, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"ref", NULL, js_ref, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, js_info, NULL, NULL, NULL, napi_default, NULL},
      {"meta", NULL, NULL, NULL, NULL, meta, napi_default, NULL},
      {"metaStride", NULL, NULL, NULL, NULL, budp_make_int(env, META_STRIDE), napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
