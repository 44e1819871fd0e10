/* Error replies: {"error": {"code": "...", "message": "..."}} with the contract's statuses. */
#include "server.h"
#include "../proto/proto.h"

#include <errno.h>
#include <stdio.h>

int
srv_parse_sandbox_id_reply (json_t *body, char id[SBX_ID_MAX], int *valid, struct srv_reply *r)
{
  struct sbx_err err = { 0 };
  if (srv_parse_sandbox_id (body, id, valid, &err) < 0)
    {
      srv_reply_err (r, &err);
      return -1;
    }
  return 0;
}

unsigned
srv_code_status (int code)
{
  switch (code)
    {
    case SBX_E_INVALID: return 400;
    case SBX_E_NOT_FOUND: return 404;
    case SBX_E_TERMINATED: return 410;
    case SBX_E_TIMEOUT: return 408;
    case SBX_E_CAPACITY: return 503;
    case SBX_E_TOO_LARGE: return 413;
    case SBX_E_EXEC_FAILED:
    default: return 500;
    }
}

void
srv_reply_http (struct srv_reply *r, unsigned status, const char *code, const char *msg)
{
  json_decref (r->body);
  r->status = status;
  /* msg may quote a path given in a query argument or read in the sandbox, in any bytes
   * (json_pack's "s" refuses what is not UTF-8: no body, then a 500 'no reply'). */
  r->body = json_pack ("{s:{s:s,s:o}}", "error", "code", code, "message", srv_json_text (msg));
}

void
srv_reply_error (struct srv_reply *r, int code, const char *msg)
{
  srv_reply_http (r, srv_code_status (code), sbx_code_name (code), msg);
  if (code == SBX_E_CAPACITY)
    r->retry_after = 5;
}

void
srv_reply_encode_error (struct srv_reply *r, int encoding)
{
  if (encoding && errno == EMSGSIZE)
    {
      char msg[160];
      snprintf (msg, sizeof msg,
                "command: its arguments, environment and working directory take more than %u "
                "bytes (the bound of one command)", PROTO_MAX_PAYLOAD);
      srv_reply_error (r, SBX_E_INVALID, msg);
      return;
    }
  srv_reply_error (r, SBX_E_EXEC_FAILED, "could not encode the command (out of memory)");
}

void
srv_reply_err (struct srv_reply *r, const struct sbx_err *err)
{
  srv_reply_error (r, err->code ? err->code : SBX_E_INTERNAL, err->msg);
}

void
srv_reply_header (struct srv_reply *r, const char *name, char *value)
{
  if (!value)
    return;
  if (r->n_hdr >= (int) (sizeof r->hdr / sizeof r->hdr[0]))
    {
      free (value);
      return;
    }
  r->hdr[r->n_hdr].name = name;
  r->hdr[r->n_hdr++].value = value;
}
