// The hand-written LZ4 codec that native/src/lz4.c was until liblz4 replaced it (see
// native/bench/README.md and "LZ4" in tools/PERFORMANCE.md), kept only as the baseline of
// tools/bench-lz4.sh. Functions renamed hw_lz4_*. The compressor is the classic greedy single-pass scheme: a 4096-entry table of
// the last position of each 4-byte hash, a search step that grows after 64 misses (so
// incompressible data is skipped quickly), backward extension of a found match, and a check of
// the position right after a match before searching again. The decoder checks every length
// and offset against both buffers, then copies in 8- or 16-byte steps where room allows.

#include "lz4_handwritten.h"

#include <string.h>

#define MINMATCH 4
#define LASTLITERALS 5
#define MFLIMIT 12
#define HASH_LOG 12
#define SKIP_TRIGGER 6
#define MAX_DISTANCE 65535

static inline uint32_t read32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static inline uint64_t read64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static inline void write_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t read_le32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint32_t hash4(uint32_t seq) { return (seq * 2654435761u) >> (32 - HASH_LOG); }

// Bytes equal at ip and m, not reading at or past limit (from ip).
static inline size_t count_match(const uint8_t *ip, const uint8_t *m, const uint8_t *limit) {
  const uint8_t *start = ip;
  while (ip + 8 <= limit) {
    uint64_t d = read64(ip) ^ read64(m);
    if (d) return (size_t)(ip - start) + ((size_t)__builtin_ctzll(d) >> 3);
    ip += 8;
    m += 8;
  }
  while (ip < limit && *ip == *m) {
    ip++;
    m++;
  }
  return (size_t)(ip - start);
}

// Writes the extra bytes of a length >= 15 (after the nibble took 15).
static inline uint8_t *put_len(uint8_t *op, size_t len) {
  for (; len >= 255; len -= 255) *op++ = 255;
  *op++ = (uint8_t)len;
  return op;
}

size_t hw_lz4_compress(hw_lz4_state *st, const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
  if (cap < 5 || n > 0x7fffffffu) return 0;
  write_le32(dst, (uint32_t)n);
  uint8_t *op = dst + 4;
  uint8_t *const oend = dst + cap;
  const uint8_t *ip = src, *anchor = src;
  const uint8_t *const iend = src + n;

  if (n >= MFLIMIT + 1) {
    uint32_t *const table = st->table;
    const uint8_t *const mflimit_plus_one = iend - MFLIMIT + 1;
    const uint8_t *const matchlimit = iend - LASTLITERALS;
    memset(table, 0, sizeof st->table);
    table[hash4(read32(ip))] = 0;
    ip++;
    uint32_t forward_h = hash4(read32(ip));
    for (;;) {
      const uint8_t *match;
      uint8_t *token;
      {
        const uint8_t *forward_ip = ip;
        unsigned step = 1, search = 1u << SKIP_TRIGGER;
        do {
          uint32_t h = forward_h;
          ip = forward_ip;
          forward_ip += step;
          step = search++ >> SKIP_TRIGGER;
          if (forward_ip > mflimit_plus_one) goto last_literals;
          match = src + table[h];
          forward_h = hash4(read32(forward_ip));
          table[h] = (uint32_t)(ip - src);
        } while (match + MAX_DISTANCE < ip || read32(match) != read32(ip));
      }
      while (ip > anchor && match > src && ip[-1] == match[-1]) {
        ip--;
        match--;
      }
      {
        size_t lit = (size_t)(ip - anchor);
        token = op++;
        if ((size_t)(oend - op) < lit + lit / 255 + 2 + 1 + LASTLITERALS) return 0;
        if (lit >= 15) {
          *token = 15 << 4;
          op = put_len(op, lit - 15);
        } else {
          *token = (uint8_t)(lit << 4);
        }
        memcpy(op, anchor, lit);
        op += lit;
      }
    next_match:
      if ((size_t)(oend - op) < 2 + 1 + LASTLITERALS) return 0;
      op[0] = (uint8_t)(ip - match);
      op[1] = (uint8_t)((ip - match) >> 8);
      op += 2;
      {
        size_t ml = count_match(ip + MINMATCH, match + MINMATCH, matchlimit);
        ip += ml + MINMATCH;
        if ((size_t)(oend - op) < ml / 255 + 1 + LASTLITERALS) return 0;
        if (ml >= 15) {
          *token = (uint8_t)(*token + 15);
          op = put_len(op, ml - 15);
        } else {
          *token = (uint8_t)(*token + ml);
        }
      }
      anchor = ip;
      if (ip >= mflimit_plus_one) break;
      table[hash4(read32(ip - 2))] = (uint32_t)(ip - 2 - src);
      {
        uint32_t h = hash4(read32(ip));
        match = src + table[h];
        table[h] = (uint32_t)(ip - src);
        if (match + MAX_DISTANCE >= ip && read32(match) == read32(ip)) {
          token = op++;
          *token = 0;
          goto next_match;
        }
      }
      forward_h = hash4(read32(++ip));
    }
  }
last_literals : {
  size_t lit = (size_t)(iend - anchor);
  if ((size_t)(oend - op) < 1 + lit + lit / 255 + 1) return 0;
  if (lit >= 15) {
    *op++ = 15 << 4;
    op = put_len(op, lit - 15);
  } else {
    *op++ = (uint8_t)(lit << 4);
  }
  memcpy(op, anchor, lit);
  op += lit;
}
  return (size_t)(op - dst);
}

long hw_lz4_claimed(const uint8_t *src, size_t n) { return n < 4 ? -1 : (long)read_le32(src); }

long hw_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
  if (n < 4) return -1;
  const size_t want = read_le32(src);
  if (want > cap) return -1;
  const uint8_t *ip = src + 4;
  const uint8_t *const iend = src + n;
  uint8_t *op = dst;
  uint8_t *const oend = dst + want;
  for (;;) {
    if (ip >= iend) {
      if (op == oend && ip == iend) break;  // ended after a match: unusual but complete
      return -1;
    }
    const unsigned token = *ip++;
    size_t lit = token >> 4;
    size_t off, ml;
    // The common short sequence (no extra length bytes) far from both ends: literals copied
    // as 16 bytes and a match of at most 18 as 8 + 8 + 2, without length checks.
    if (lit != 15 && iend - ip >= 32 && oend - op >= 32) {
      memcpy(op, ip, 16);
      op += lit;
      ip += lit;
      off = (size_t)ip[0] | ((size_t)ip[1] << 8);
      ip += 2;
      ml = token & 15;
      if (ml != 15 && off >= 8 && off <= (size_t)(op - dst)) {
        const uint8_t *m = op - off;
        memcpy(op, m, 8);
        memcpy(op + 8, m + 8, 8);
        memcpy(op + 16, m + 16, 2);
        op += ml + MINMATCH;
        continue;
      }
      goto match;
    }
    if (lit == 15) {
      unsigned b;
      do {
        if (ip >= iend) return -1;
        b = *ip++;
        lit += b;
      } while (b == 255);
    }
    if (lit > (size_t)(iend - ip) || lit > (size_t)(oend - op)) return -1;
    if (lit <= 16 && iend - ip >= 16 && oend - op >= 16) {
      memcpy(op, ip, 16);
    } else {
      memcpy(op, ip, lit);
    }
    ip += lit;
    op += lit;
    if (ip == iend) break;  // the last sequence has literals only
    if (iend - ip < 2) return -1;
    off = (size_t)ip[0] | ((size_t)ip[1] << 8);
    ip += 2;
    ml = token & 15;
  match:
    if (off == 0 || off > (size_t)(op - dst)) return -1;
    if (ml == 15) {
      unsigned b;
      do {
        if (ip >= iend) return -1;
        b = *ip++;
        ml += b;
      } while (b == 255);
    }
    ml += MINMATCH;
    if (ml > (size_t)(oend - op)) return -1;
    const uint8_t *m = op - off;
    const size_t room = (size_t)(oend - op);
    if (off >= 16 && room >= ml + 16) {
      for (size_t k = 0; k < ml; k += 16) memcpy(op + k, m + k, 16);
    } else if (off == 1) {
      memset(op, *m, ml);
    } else if (off >= 8 && room >= ml + 8) {
      for (size_t k = 0; k < ml; k += 8) memcpy(op + k, m + k, 8);
    } else {
      for (size_t k = 0; k < ml; k++) op[k] = m[k];
    }
    op += ml;
  }
  if (op != oend) return -1;
  return (long)want;
}
