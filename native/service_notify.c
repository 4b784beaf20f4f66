// sd_notify(3) for Node: one datagram to $NOTIFY_SOCKET (AF_UNIX, SOCK_DGRAM), which Node's dgram
// cannot send. Sent from the calling process itself, so systemd's default NotifyAccess=main accepts it
// (a `systemd-notify` child would need NotifyAccess=all, which would let the unprivileged worker speak
// for the service too). The TypeScript side is src/service-notify.ts.
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_MESSAGE 4096

static napi_value make_int(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

/* notify(path, message): 0, or the errno of socket/sendto. A path starting with '@' is abstract. */
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  struct sockaddr_un addr;
  char path[sizeof addr.sun_path + 1];
  char message[MAX_MESSAGE + 1];
  size_t path_len = 0, message_len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], message, sizeof message, &message_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify(path: string, message: string)");
    return NULL;
  }
  /* napi truncates what does not fit: a full buffer means the input was too long. */
  if (path_len == 0 || path_len >= sizeof addr.sun_path || message_len >= MAX_MESSAGE) return make_int(env, EINVAL);
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, path_len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_int(env, errno);
  ssize_t sent = sendto(fd, message, message_len, MSG_NOSIGNAL, (struct sockaddr*)&addr, len);
  int err = sent < 0 ? errno : 0;
  close(fd);
  return make_int(env, err);
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "notify", NAPI_AUTO_LENGTH, js_notify, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "notify", fn) != napi_ok) return NULL;
  return exports;
}
