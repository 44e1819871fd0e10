/* Private to sbxd's money code (auth*.c, h_money.c). */
#pragma once

#include "server.h"

#include <jansson.h>
#include <stddef.h>

/* POST {facilitator}/settle. 0 with tx (the transaction hash) on success; -1 with reason
 * (the facilitator's errorReason, or facilitator_unreachable / facilitator_http_<code> /
 * settlement_failed). */
int srv_settle (const char *facilitator, const json_t *body, char *tx, size_t txcap,
                char *reason, size_t rcap);
/* POST {facilitator}/verify: 0 when isValid, else -1 with reason (the facilitator's
 * invalidReason, or facilitator_unreachable / facilitator_http_<code> / payment_invalid).
 * Catches what only the chain knows (balance, a nonce used elsewhere) before anything
 * runs. */
int srv_facilitator_verify (const char *facilitator, const json_t *body, char *reason,
                            size_t rcap);
