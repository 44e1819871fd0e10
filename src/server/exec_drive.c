/* The exec protocol loop of sbxd: see exec_drive.h. */
#include "exec_drive.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

/* After the command's own timeout, how long the agent has to report its end. */
#define AGENT_GRACE_MS 30000

int
srv_exec_frames (const struct proto_exec_req *pr, uint32_t xid, const void *in, size_t in_len,
                 struct proto_buf *out)
{
  struct proto_buf payload = { 0 };
  int rc = -1;
  if (proto_exec_req_encode (pr, &payload) < 0
      || proto_frame_append (out, PROTO_EXEC_START, xid, payload.data, (uint32_t) payload.len)
             < 0)
    goto done;
  if (pr->stdin_mode == PROTO_STDIN_PIPE)
    {
      for (size_t o = 0; o < in_len; o += PROTO_DATA_CHUNK)
        {
          size_t n = in_len - o < PROTO_DATA_CHUNK ? in_len - o : PROTO_DATA_CHUNK;
          if (proto_frame_append (out, PROTO_EXEC_STDIN, xid, (const uint8_t *) in + o,
                                  (uint32_t) n) < 0)
            goto done;
        }
      if (proto_frame_append (out, PROTO_EXEC_STDIN, xid, NULL, 0) < 0)
        goto done;
    }
  rc = 0;
done:
  proto_buf_free (&payload);
  return rc;
}

int
srv_exec_drive (int fd, struct proto_reader *rd, const struct proto_buf *out,
                struct srv_exec_run *run, struct sbx_err *err)
{
  size_t off = 0;
  int64_t deadline = run->timeout_ms ? sbx_mono_ns () / 1000000 + (int64_t) run->timeout_ms
                                           + AGENT_GRACE_MS
                                     : 0;
  for (;;)
    {
      struct proto_frame f;
      int rc;
      while ((rc = proto_reader_next (rd, &f, err)) == 1)
        {
          if (f.id != run->xid && f.type != PROTO_ERROR)
            continue;
          switch (f.type)
            {
            case PROTO_EXEC_STDOUT:
            case PROTO_EXEC_STDERR:
              run->on_output (run->ud, f.type, f.payload, f.len);
              break;
            case PROTO_EXEC_EXIT:
              if (proto_exec_exit_decode (f.payload, f.len, &run->exit, err) < 0)
                return -1;
              run->got_exit = 1;
              return 0;
            case PROTO_ERROR:
              {
                if (proto_error_decode (f.payload, f.len, &run->agent_error_code,
                                        run->agent_error, sizeof run->agent_error, err) < 0)
                  return -1;
                run->agent_error_set = 1;
                return 0;
              }
            default:
              break;
            }
        }
      if (rc < 0)
        return -1;
      struct pollfd p = { .fd = fd, .events = POLLIN | (off < out->len ? POLLOUT : 0) };
      int wait_ms = -1;
      if (deadline)
        {
          int64_t left = deadline - sbx_mono_ns () / 1000000;
          if (left <= 0)
            return sbx_err_set (err, SBX_E_EXEC_FAILED, 0,
                                "the sandbox agent did not end the command after its timeout");
          wait_ms = left > 60000 ? 60000 : (int) left;
        }
      int pr = poll (&p, 1, wait_ms);
      if (pr < 0)
        {
          if (errno == EINTR)
            continue;
          return sbx_err_sys (err, "poll agent socket");
        }
      if (pr == 0)
        continue;
      if (p.revents & POLLOUT)
        {
          ssize_t n = send (fd, out->data + off, out->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
          if (n > 0)
            off += (size_t) n;
          else if (n < 0 && errno != EAGAIN && errno != EINTR)
            return 1; /* the agent is gone; the read side tells us why */
        }
      if (p.revents & (POLLIN | POLLHUP | POLLERR))
        {
          ssize_t n = proto_reader_fill (rd, fd);
          if (n == 0)
            return 1;
          if (n < 0 && errno != EAGAIN && errno != EINTR)
            return 1;
        }
    }
}
