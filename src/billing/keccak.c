/* keccak-256 as Ethereum uses it (the pre-FIPS padding 0x01 ... 0x80), rate 136 bytes.
 * A plain Keccak-f[1600]: speed does not matter here (a few hashes per paid request),
 * clarity and portability do, so lanes are loaded byte by byte (no endianness tricks). */
#include "billing.h"

#include <string.h>

#define RATE 136

static const uint64_t round_consts[24] = {
  0x0000000000000001ull, 0x0000000000008082ull, 0x800000000000808aull, 0x8000000080008000ull,
  0x000000000000808bull, 0x0000000080000001ull, 0x8000000080008081ull, 0x8000000000008009ull,
  0x000000000000008aull, 0x0000000000000088ull, 0x0000000080008009ull, 0x000000008000000aull,
  0x000000008000808bull, 0x800000000000008bull, 0x8000000000008089ull, 0x8000000000008003ull,
  0x8000000000008002ull, 0x8000000000000080ull, 0x000000000000800aull, 0x800000008000000aull,
  0x8000000080008081ull, 0x8000000000008080ull, 0x0000000080000001ull, 0x8000000080008008ull,
};
/* rho rotation amounts and pi lane order, walked together along the pi cycle. */
static const unsigned rho[24] = { 1,  3,  6,  10, 15, 21, 28, 36, 45, 55, 2,  14,
                                  27, 41, 56, 8,  25, 43, 62, 18, 39, 61, 20, 44 };
static const unsigned pi_lane[24] = { 10, 7,  11, 17, 18, 3, 5,  16, 8,  21, 24, 4,
                                      15, 23, 19, 13, 12, 2, 20, 14, 22, 9,  6,  1 };

static inline uint64_t
rotl (uint64_t x, unsigned n)
{
  return (x << n) | (x >> (64 - n));
}

static void
keccak_f (uint64_t st[25])
{
  uint64_t bc[5], t;
  for (int r = 0; r < 24; r++)
    {
      /* theta */
      for (int i = 0; i < 5; i++)
        bc[i] = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
      for (int i = 0; i < 5; i++)
        {
          t = bc[(i + 4) % 5] ^ rotl (bc[(i + 1) % 5], 1);
          for (int j = 0; j < 25; j += 5)
            st[j + i] ^= t;
        }
      /* rho and pi */
      t = st[1];
      for (int i = 0; i < 24; i++)
        {
          unsigned j = pi_lane[i];
          bc[0] = st[j];
          st[j] = rotl (t, rho[i]);
          t = bc[0];
        }
      /* chi */
      for (int j = 0; j < 25; j += 5)
        {
          for (int i = 0; i < 5; i++)
            bc[i] = st[j + i];
          for (int i = 0; i < 5; i++)
            st[j + i] ^= (~bc[(i + 1) % 5]) & bc[(i + 2) % 5];
        }
      /* iota */
      st[0] ^= round_consts[r];
    }
}

static inline void
xor_byte (uint64_t st[25], size_t pos, uint8_t b)
{
  st[pos / 8] ^= (uint64_t) b << (8 * (pos % 8));
}

void
bill_keccak_init (struct bill_keccak *k)
{
  memset (k, 0, sizeof *k);
}

void
bill_keccak_update (struct bill_keccak *k, const void *data, size_t len)
{
  const uint8_t *p = data;
  for (size_t i = 0; i < len; i++)
    {
      xor_byte (k->st, k->pos++, p[i]);
      if (k->pos == RATE)
        {
          keccak_f (k->st);
          k->pos = 0;
        }
    }
}

void
bill_keccak_final (struct bill_keccak *k, uint8_t out[32])
{
  /* Keccak padding pad10*1 with domain byte 0x01; when pos == RATE-1 both land in one
   * byte (0x81). A full block was already permuted, so pos < RATE here. */
  xor_byte (k->st, k->pos, 0x01);
  xor_byte (k->st, RATE - 1, 0x80);
  keccak_f (k->st);
  for (size_t i = 0; i < 32; i++)
    out[i] = (uint8_t) (k->st[i / 8] >> (8 * (i % 8)));
  memset (k, 0, sizeof *k);
}

void
bill_keccak256 (const void *data, size_t len, uint8_t out[32])
{
  struct bill_keccak k;
  bill_keccak_init (&k);
  bill_keccak_update (&k, data, len);
  bill_keccak_final (&k, out);
}
