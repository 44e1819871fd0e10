/* libFuzzer target: the frame reader and every payload decoder on untrusted bytes.
 * Build (see docs/protocol.md):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *     tests/fuzz/fuzz_proto.c src/proto/[a-z]*.c src/common/[a-z]*.c -o build/fuzz_proto
 *   build/fuzz_proto -max_total_time=60 tests/fuzz/corpus/proto
 * The first input byte picks how the rest is used: as a frame stream fed in chunks
 * (every frame's payload then goes to the decoder of its type), or straight into one
 * decoder. */
#include "proto/proto.h"

#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
decode_payload (uint8_t type, const uint8_t *p, size_t n)
{
  struct sbx_err err;
  switch (type % 6)
    {
    case 0:
      {
        uint32_t v;
        proto_hello_decode (p, n, &v, &err);
        break;
      }
    case 1:
      {
        struct proto_exec_req req;
        if (proto_exec_req_decode (p, n, &req, &err) == 0)
          {
            /* what decode promises: argc >= 1, NULL-terminated, strings intact */
            if (req.argc < 1 || req.argv[req.argc] || req.env[req.envc])
              __builtin_trap ();
            for (size_t i = 0; i < req.argc; i++)
              (void) strlen (req.argv[i]);
            struct proto_buf b = { 0 };
            if (proto_exec_req_encode (&req, &b) != 0)
              __builtin_trap (); /* what decoded must encode again */
            proto_buf_free (&b);
            proto_exec_req_free (&req);
          }
        break;
      }
    case 2:
      {
        struct proto_exec_exit ex;
        proto_exec_exit_decode (p, n, &ex, &err);
        break;
      }
    case 4:
      {
        struct proto_msg m;
        if (proto_msg_decode (p, n, &m, &err) == 0)
          {
            struct proto_buf b = { 0 };
            if (proto_msg_encode (&m, &b) != 0 || b.len > n)
              __builtin_trap (); /* what decoded encodes again, never larger */
            proto_buf_free (&b);
            proto_msg_free (&m);
          }
        break;
      }
    case 5:
      {
        uint32_t pid, proc;
        int existing;
        proto_started_decode (p, n, &pid, &proc, &existing, &err);
        break;
      }
    default:
      {
        uint32_t code;
        int e;
        char msg[16];
        proto_error_decode_errno (p, n, &code, &e, msg, sizeof msg, &err);
        break;
      }
    }
}

static uint8_t
decoder_for (uint8_t frame_type)
{
  switch (frame_type)
    {
    case PROTO_HELLO: return 0;
    case PROTO_EXEC_START: return 1;
    case PROTO_EXEC_EXIT: return 2;
    case PROTO_EXEC_STARTED: return 5;
    case PROTO_ERROR: return 3;
    default: return frame_type >= PROTO_PROC_OUTPUT ? 4 : 3;
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  data++;
  size--;
  if (mode & 0x80)
    {
      /* a copy of exactly size bytes, so an overread hits the redzone */
      uint8_t *p = malloc (size ? size : 1);
      memcpy (p, data, size);
      decode_payload (mode, p, size);
      free (p);
      return 0;
    }
  /* Frame stream, fed in chunks of 1..128 bytes chosen by mode. */
  size_t step = (size_t) (mode & 0x7f) + 1;
  struct proto_reader r;
  proto_reader_init (&r);
  size_t fed = 0;
  for (;;)
    {
      struct proto_frame f;
      struct sbx_err err;
      int rc = proto_reader_next (&r, &f, &err);
      if (rc < 0)
        break;
      if (rc == 1)
        {
          if (!proto_type_valid (f.type) || f.len > PROTO_MAX_PAYLOAD)
            __builtin_trap ();
          decode_payload (decoder_for (f.type), f.payload, f.len);
          continue;
        }
      if (fed == size)
        break;
      size_t n = size - fed < step ? size - fed : step;
      if (r.consumed)
        {
          memmove (r.in.data, r.in.data + r.consumed, r.in.len - r.consumed);
          r.in.len -= r.consumed;
          r.consumed = 0;
        }
      if (proto_buf_append (&r.in, data + fed, n) < 0)
        break;
      fed += n;
    }
  proto_reader_free (&r);
  return 0;
}
