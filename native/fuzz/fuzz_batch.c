// libFuzzer target: the batch paths of native/src/batch.c, as the store drives them. Input:
// u8 mode, a segment list, damage positions, then the data.
//
// vv_hash_batch hashes and compresses the segments (with a summary filter from the input that
// says some are known, so they are not compressed); the payloads (or raw bytes) are written to
// a memfd as a container would hold them, some bytes of the file are then damaged, and
// vv_decode_batch reads them back in one call (coalescing neighbours into one pread).
// Checks: fingerprints equal vv_blake3 of each segment; a compressed payload is smaller than
// its segment by 1/16; every record decodes to its segment's bytes exactly, or fails with a
// status (never VV_OK with other bytes); with no damage, every record succeeds.
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../src/batch.h"
#include "../src/blake3.h"
#include "fuzz_util.h"

#define MAX_SEGS 48
#define MAX_DAMAGE 4

static int fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fd < 0) fd = memfd_create("vv-fuzz-batch", 0);
  vv_in in = {data, size};
  uint32_t mode = take(&in, 1);
  size_t nsegs = 1 + take(&in, 1) % MAX_SEGS;
  uint32_t segs[2 * MAX_SEGS], gaps[MAX_SEGS];
  for (size_t i = 0; i < nsegs; i++) {
    segs[2 * i] = take(&in, 2);
    segs[2 * i + 1] = take(&in, 2);
    gaps[i] = take(&in, 1) * (mode & 1 ? 1024 : 1);  // bytes between records; large ones split spans
  }
  size_t ndamage = take(&in, 1) % (MAX_DAMAGE + 1);
  uint32_t damage[MAX_DAMAGE];
  for (size_t k = 0; k < ndamage; k++) damage[k] = take(&in, 3);
  uint32_t bloom_words[2] = {take(&in, 4), take(&in, 4)};
  // Data: the rest, repeated into compressible runs when mode says so.
  size_t reps = mode & 2 ? 1 + (mode >> 2) : 1;
  size_t n = in.n * reps;
  uint8_t *buf = malloc(n ? n : 1);
  for (size_t at = 0; at < n; at += in.n) memcpy(buf + at, in.p, in.n);
  uint64_t total = 0;
  for (size_t i = 0; i < nsegs; i++) {
    segs[2 * i] = n ? segs[2 * i] % (n + 1) : 0;
    if (segs[2 * i + 1] > n - segs[2 * i]) segs[2 * i + 1] = (uint32_t)(n - segs[2 * i]);
    total += segs[2 * i + 1];
  }

  uint8_t fps[32 * MAX_SEGS];
  int32_t plens[MAX_SEGS];
  uint8_t *payloads = malloc(total ? total : 1);  // exactly the room the addon demands
  vv_bloom bloom = {mode & 4 ? bloom_words : NULL, 63, 1 + (mode >> 5)};
  long pb = vv_hash_batch(buf, segs, nsegs, &bloom, 1, fps, plens, payloads);
  MUST(pb >= 0 && (uint64_t)pb <= total, "payload bytes %ld of %llu", pb, (unsigned long long)total);

  // The file: each record's payload (or raw bytes) after its gap.
  vv_record recs[MAX_SEGS];
  uint8_t *dsts[MAX_SEGS];
  size_t pat = 0;
  uint64_t fpos = 0;
  MUST(ftruncate(fd, 0) == 0, "ftruncate");
  for (size_t i = 0; i < nsegs; i++) {
    const uint8_t *seg = buf + segs[2 * i];
    uint32_t len = segs[2 * i + 1];
    uint8_t got[32];
    vv_blake3(seg, len, got);
    MUST(memcmp(got, fps + 32 * i, 32) == 0, "segment %zu: batch fingerprint differs", i);
    MUST(plens[i] == -1 || plens[i] == -2 || (plens[i] > 0 && (uint32_t)plens[i] <= len - (len >> 4)),
         "segment %zu: plen %d for %u bytes", i, plens[i], len);
    const uint8_t *stored = seg;
    uint32_t stored_len = len, codec = VV_CODEC_RAW;
    if (plens[i] > 0) {
      stored = payloads + pat;
      stored_len = (uint32_t)plens[i];
      codec = VV_CODEC_LZ4;
      pat += (size_t)plens[i];
    }
    fpos += gaps[i];
    MUST(pwrite(fd, stored, stored_len, (off_t)fpos) == (ssize_t)stored_len, "pwrite");
    dsts[i] = malloc(len ? len : 1);
    recs[i] = (vv_record){fd, fpos, stored_len, len, codec, dsts[i], fps + 32 * i, -1, -1};
    fpos += stored_len;
  }
  MUST((long)pat == pb, "payloads %zu of %ld bytes used", pat, pb);
  // A record of 0 bytes after a gap writes nothing; the file still reaches its position.
  MUST(ftruncate(fd, (off_t)fpos) == 0, "ftruncate");
  size_t damaged = 0;
  for (size_t k = 0; k < ndamage && fpos > 0; k++) {
    uint8_t b;
    off_t at = (off_t)(damage[k] % (fpos + 16));  // sometimes past the end: a short file
    if ((uint64_t)at >= fpos) {
      MUST(ftruncate(fd, (off_t)(fpos - 1 - (damage[k] & 15) % fpos)) == 0, "ftruncate");
    } else {
      if (pread(fd, &b, 1, at) != 1) continue;  // cut off by an earlier truncation
      b ^= (uint8_t)(1u << (damage[k] >> 21));
      MUST(pwrite(fd, &b, 1, at) == 1, "pwrite");
    }
    damaged++;
  }
  size_t failed = vv_decode_batch(recs, nsegs);
  size_t bad = 0;
  for (size_t i = 0; i < nsegs; i++) {
    if (recs[i].status == VV_OK) {
      MUST(memcmp(dsts[i], buf + segs[2 * i], segs[2 * i + 1]) == 0, "record %zu: VV_OK with wrong bytes", i);
    } else {
      MUST(recs[i].status >= VV_E_IO && recs[i].status <= VV_E_HASH, "record %zu: status %d", i, recs[i].status);
      bad++;
    }
    free(dsts[i]);
  }
  MUST(bad == failed, "%zu failed records, %zu counted", bad, failed);
  if (!damaged) MUST(failed == 0, "%zu records failed with no damage", failed);
  free(payloads);
  free(buf);
  return 0;
}
