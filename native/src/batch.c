// See batch.h.

#define _GNU_SOURCE
#include "batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blake3.h"
#include "lz4.h"
#include "read_seam.h"

static int bloom_may_contain(const vv_bloom *b, const uint8_t *fp) {
  uint32_t h1 = (uint32_t)fp[0] | ((uint32_t)fp[1] << 8) | ((uint32_t)fp[2] << 16) | ((uint32_t)fp[3] << 24);
  uint32_t h2 = ((uint32_t)fp[4] | ((uint32_t)fp[5] << 8) | ((uint32_t)fp[6] << 16) | ((uint32_t)fp[7] << 24)) | 1u;
  for (uint32_t i = 0; i < b->probes; i++) {
    uint32_t bit = (h1 + i * h2) & b->mask;
    // Read while JavaScript may set bits: a stale answer only changes what gets compressed here.
    uint32_t w = __atomic_load_n(&b->words[bit >> 5], __ATOMIC_RELAXED);
    if (!(w & (1u << (bit & 31)))) return 0;
  }
  return 1;
}

static __thread vv_lz4_state lz4_state;

long vv_hash_batch(const uint8_t *data, const uint32_t *segs, size_t n, const vv_bloom *bloom, int compress,
                   uint8_t *fps, int32_t *plens, uint8_t *payloads) {
  if (vv_blake3_many(data, segs, n, fps) != 0) return -1;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    plens[i] = -1;
    if (!compress || (bloom->words && bloom_may_contain(bloom, fps + 32 * i))) continue;
    uint32_t len = segs[2 * i + 1];
    // Kept only when it saves at least 1/16 (src/store/codec/codec.ts, compressionPays).
    size_t cap = len - (len >> 4);
    size_t got = cap >= 5 ? vv_lz4_compress(&lz4_state, data + segs[2 * i], len, payloads + at, cap) : 0;
    if (got) {
      plens[i] = (int32_t)got;
      at += got;
    } else {
      plens[i] = -2;
    }
  }
  return (long)at;
}

// A growing per-thread buffer for coalesced reads.
static __thread uint8_t *span_buf;
static __thread size_t span_cap;

static uint8_t *span_room(size_t n) {
  if (n <= span_cap) return span_buf;
  size_t cap = n < (1u << 20) ? (1u << 20) : n;
  uint8_t *b = realloc(span_buf, cap);
  if (!b) return NULL;
  span_buf = b;
  span_cap = cap;
  return b;
}

// Records further apart than this are read separately.
#define MAX_GAP (64 * 1024)
#define MAX_SPAN (8 * 1024 * 1024)

static void fail(vv_record *r, int status, int detail) {
  r->status = status;
  r->detail = detail;
}

size_t vv_decode_batch(vv_record *recs, size_t n) {
  size_t failed = 0;
  size_t i = 0;
  const uint8_t *ptrs[256];
  size_t lens[256];
  size_t idx[256];
  uint8_t got[256 * 32];
  while (i < n) {
    // A span: records of one file, in position order, close together.
    size_t j = i + 1;
    uint64_t start = recs[i].pos, end = recs[i].pos + recs[i].stored;
    while (j < n && j - i < 256 && recs[j].fd == recs[i].fd && recs[j].pos >= end && recs[j].pos - end <= MAX_GAP &&
           recs[j].pos + recs[j].stored - start <= MAX_SPAN) {
      end = recs[j].pos + recs[j].stored;
      j++;
    }
    size_t want = (size_t)(end - start);
    uint8_t *buf = span_room(want ? want : 1);
    size_t have = 0;
    int err = 0;
    if (!buf) {
      err = ENOMEM;
    } else {
      while (have < want) {
        ssize_t r = vv_pread(recs[i].fd, buf + have, want - have, (off_t)(start + have));
        if (r < 0) {
          if (errno == EINTR) continue;
          err = errno;
          break;
        }
        if (r == 0) break;
        have += (size_t)r;
      }
    }
    size_t nh = 0;
    for (size_t k = i; k < j; k++) {
      vv_record *r = &recs[k];
      r->status = VV_OK;
      r->detail = 0;
      size_t at = (size_t)(r->pos - start);
      if (err) {
        fail(r, VV_E_IO, err);
      } else if (at + r->stored > have) {
        fail(r, VV_E_SHORT, (int)(have > at ? have - at : 0));
      } else if (r->codec == VV_CODEC_LZ4) {
        long d = vv_lz4_decompress(buf + at, r->stored, r->dst, r->raw);
        long claimed = vv_lz4_claimed(buf + at, r->stored);
        if (claimed >= 0 && (size_t)claimed != r->raw) fail(r, VV_E_LENGTH, (int)claimed);
        else if (d < 0) fail(r, VV_E_DECODE, 0);
      } else if (r->stored != r->raw) {
        fail(r, VV_E_LENGTH, (int)r->stored);
      } else {
        memcpy(r->dst, buf + at, r->raw);
      }
      if (r->status == VV_OK) {
        ptrs[nh] = r->dst;
        lens[nh] = r->raw;
        idx[nh] = k;
        nh++;
      } else {
        failed++;
      }
    }
    if (nh > 0 && vv_blake3_ptrs(nh, ptrs, lens, got) != 0) {
      for (size_t h = 0; h < nh; h++) fail(&recs[idx[h]], VV_E_IO, ENOMEM);
      failed += nh;
    } else {
      for (size_t h = 0; h < nh; h++) {
        if (memcmp(got + 32 * h, recs[idx[h]].fp, 32) != 0) {
          fail(&recs[idx[h]], VV_E_HASH, 0);
          failed++;
        }
      }
    }
    i = j;
  }
  return failed;
}

long vv_accept_batch(const uint8_t *src, const uint32_t *items, size_t n, uint8_t *plain, uint8_t *fps,
                     int32_t *status, int32_t *plens, uint8_t *payloads) {
  size_t at = 0, ok = 0;
  for (; ok < n; ok++) {
    const uint32_t *it = items + 4 * ok;
    const uint8_t *p = src + it[0];
    uint32_t plen = it[1], codec = it[2], raw = it[3];
    status[2 * ok] = VV_OK;
    status[2 * ok + 1] = 0;
    if (codec == VV_CODEC_LZ4) {
      long claimed = vv_lz4_claimed(p, plen);
      if (claimed < 0) {
        status[2 * ok] = VV_E_DECODE;
        status[2 * ok + 1] = -1;
        break;
      }
      if ((size_t)claimed != raw) {
        status[2 * ok] = VV_E_LENGTH;
        status[2 * ok + 1] = (int32_t)(claimed > 0x7fffffff ? 0x7fffffff : claimed);
        break;
      }
      if (vv_lz4_decompress(p, plen, plain + at, raw) != (long)raw) {
        status[2 * ok] = VV_E_DECODE;
        break;
      }
    } else if (plen != raw) {
      status[2 * ok] = VV_E_LENGTH;
      status[2 * ok + 1] = (int32_t)plen;
      break;
    } else {
      memcpy(plain + at, p, raw);
    }
    at += raw;
  }
  // Spans of the decoded ones, in plain, for one hashing call.
  uint32_t *segs = malloc(2 * (ok ? ok : 1) * sizeof *segs);
  if (!segs) return -1;
  at = 0;
  for (size_t i = 0; i < ok; i++) {
    segs[2 * i] = (uint32_t)at;
    segs[2 * i + 1] = items[4 * i + 3];
    at += items[4 * i + 3];
  }
  int r = ok ? vv_blake3_many(plain, segs, ok, fps) : 0;
  // The store keeps a raw segment LZ4ed when that pays, as for a local write: compressed here,
  // not on the main thread (a sender sends raw what did not pay for it, so this mostly confirms).
  size_t pat = 0;
  for (size_t i = 0; r == 0 && i < ok; i++) {
    plens[i] = -1;
    if (items[4 * i + 2] != VV_CODEC_RAW) continue;
    uint32_t len = segs[2 * i + 1];
    size_t cap = len - (len >> 4);
    size_t got = cap >= 5 ? vv_lz4_compress(&lz4_state, plain + segs[2 * i], len, payloads + pat, cap) : 0;
    if (got) {
      plens[i] = (int32_t)got;
      pat += got;
    } else {
      plens[i] = -2;
    }
  }
  free(segs);
  return r != 0 ? -1 : (long)ok;
}
