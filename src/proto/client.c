/* Host side: connect to an agent's socket and exchange HELLO (blocking, bounded by
 * PROTO_HELLO_TIMEOUT_MS: the agent may be hostile and never answer). */
#include "proto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static int
set_timeouts (int fd, int ms)
{
  struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
  if (setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0
      || setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
    return -1;
  return 0;
}

int
proto_client_connect (const char *socket_path, struct proto_reader *r, struct sbx_err *err)
{
  proto_reader_init (r);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  size_t plen = strlen (socket_path);
  if (plen == 0 || plen >= sizeof sa.sun_path)
    return sbx_err_set (err, SBX_E_INVALID, ENAMETOOLONG, "agent socket path \"%s\" too long",
                        socket_path);
  memcpy (sa.sun_path, socket_path, plen + 1);

  cleanup_close int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return sbx_err_sys (err, "socket");
  /* SO_SNDTIMEO bounds a unix connect (full backlog) and the send, SO_RCVTIMEO the read. */
  if (set_timeouts (fd, PROTO_HELLO_TIMEOUT_MS) < 0)
    return sbx_err_sys (err, "set agent socket timeouts");
  int rc;
  do
    rc = connect (fd, (struct sockaddr *) &sa, sizeof sa);
  while (rc < 0 && errno == EINTR);
  if (rc < 0)
    return sbx_err_sys (err, "connect \"%s\"", socket_path);

  struct proto_buf hello = { 0 };
  if (proto_hello_encode (&hello, "sbx") < 0)
    return sbx_err_sys (err, "encode hello");
  rc = proto_frame_write (fd, PROTO_HELLO, 0, hello.data, (uint32_t) hello.len);
  proto_buf_free (&hello);
  /* An agent refusing us (too many connections) sends ERROR and closes at once, so our
   * hello may meet EPIPE: its ERROR frame is still there to read and says why. */
  int send_errno = rc < 0 ? errno : 0;
  if (rc < 0 && errno != EPIPE && errno != ECONNRESET)
    return sbx_err_sys (err, "send hello to \"%s\"", socket_path);

  struct proto_frame f;
  rc = proto_read_frame (fd, r, &f, err);
  if (rc < 0 && err && (err->sys_errno == EAGAIN || err->sys_errno == EWOULDBLOCK))
    return sbx_err_set (err, SBX_E_TIMEOUT, EAGAIN, "agent \"%s\" sent no hello within %d ms",
                        socket_path, PROTO_HELLO_TIMEOUT_MS);
  if (rc <= 0 && send_errno)
    {
      errno = send_errno;
      return sbx_err_sys (err, "send hello to \"%s\"", socket_path);
    }
  if (rc == 0)
    return sbx_err_set (err, SBX_E_PROTO, 0, "agent \"%s\" closed before hello", socket_path);
  if (rc < 0)
    return sbx_err_wrap (err, "hello from \"%s\"", socket_path);
  if (f.type == PROTO_ERROR)
    {
      uint32_t code;
      char msg[512];
      if (proto_error_decode (f.payload, f.len, &code, msg, sizeof msg, err) < 0)
        return sbx_err_wrap (err, "hello from \"%s\"", socket_path);
      return sbx_err_set (err, (int) code, 0, "agent \"%s\" refused: %s", socket_path, msg);
    }
  if (f.type != PROTO_HELLO)
    return sbx_err_set (err, SBX_E_PROTO, 0, "agent \"%s\" sent frame type %u before hello",
                        socket_path, f.type);
  uint32_t version = 0;
  if (proto_hello_decode (f.payload, f.len, &version, err) < 0)
    return sbx_err_wrap (err, "hello from \"%s\"", socket_path);
  if (version != PROTO_VERSION)
    return sbx_err_set (err, SBX_E_PROTO, 0, "agent \"%s\" speaks protocol %u, we speak %u",
                        socket_path, version, PROTO_VERSION);
  if (set_timeouts (fd, 0) < 0)
    return sbx_err_sys (err, "clear agent socket timeouts");
  return steal_fd (&fd);
}
