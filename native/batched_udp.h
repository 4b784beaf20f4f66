// Shared by the batched UDP addon's parts: batched_udp.c (the module, sockets' life), udp_receive.c
// (recvmmsg and GRO to JS), udp_send.c (queue, sendmmsg and GSO). The design is in batched_udp.c.
#ifndef BATCHED_UDP_H
#define BATCHED_UDP_H
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

/*
 * A socket's batch message headers (about 30 KiB), mapped apart from its state: their pages are only
 * committed once datagrams pass, and an idle socket (most of a hub's L(P), issue 16) costs its small
 * state alone, malloc'd, instead of a page or three of this.
 */
typedef struct {
  /* receive */
  struct mmsghdr rmsgs[BATCH];
  struct iovec riov[BATCH];
  struct sockaddr_storage raddr[BATCH];
  char rctrl[BATCH][CMSG_SPACE(sizeof(int))];
  /* send */
  struct mmsghdr smsgs[BATCH];
  struct iovec siov[BATCH];
  struct sockaddr_storage saddr[BATCH];
  uint16_t sseg[BATCH];
  int snseg[BATCH];
  char sctrl[BATCH][CMSG_SPACE(sizeof(uint16_t))];
} udp_messages;

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
  char* rslots;
  char* sarena;
  size_t sused;
  int scount;
  /* the last destination parsed, so a flow's address string is parsed once */
  char last_host[64];
  int last_port;
  struct sockaddr_storage last_dest;
  socklen_t last_dest_len;
  udp_messages* m;
} udp_socket;

#define CHECK(call)                                                                                          \
  do {                                                                                                       \
    if ((call) != napi_ok) {                                                                                 \
      napi_throw_error(env, "ERR_NATIVE", "N-API call failed: " #call);                                      \
      return NULL;                                                                                           \
    }                                                                                                        \
  } while (0)

napi_value budp_throw_errno(napi_env env, int err, const char* syscall);
napi_value budp_make_int(napi_env env, int64_t v);
void budp_call_js(udp_socket* s, napi_ref ref, napi_value* argv);
void budp_report_error(udp_socket* s, int err, const char* syscall);
udp_socket* budp_unwrap(napi_env env, napi_value value);
/* The socket's uv_poll callback: reads what is there and hands it to JS (udp_receive.c). */
void budp_on_readable(uv_poll_t* handle, int status, int events);
/* An IP literal and port as a sockaddr of the socket's family: 0, or EINVAL (udp_send.c). */
int budp_parse_destination(udp_socket* s, const char* host, int port, struct sockaddr_storage* out, socklen_t* len);
napi_value budp_js_queue(napi_env env, napi_callback_info info);
napi_value budp_js_flush(napi_env env, napi_callback_info info);

#endif
