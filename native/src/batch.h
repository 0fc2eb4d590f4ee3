// The store's batch operations, run on a libuv pool thread (codec_napi.c): hashing and
// compressing the segments of an ingest batch, and reading, decoding and verifying stored
// records for a read. Plain C over plain memory; the N-API layer checks every argument.
#ifndef VMVAULT_BATCH_H
#define VMVAULT_BATCH_H

#include <stddef.h>
#include <stdint.h>

// Summary filter bits shared with JavaScript (src/store/index/bloom.ts; same probe positions).
typedef struct {
  const uint32_t *words;  // NULL: no filter
  uint32_t mask;          // bits - 1
  uint32_t probes;
} vv_bloom;

// Per segment i of data (segs[2i] offset, segs[2i+1] length): fps[32 i ..] = BLAKE3; and when
// compress is set and the filter says the fingerprint is new, an LZ4 payload appended to
// payloads (room: the sum of the lengths) with plens[i] its length, or plens[i] = -2 when
// compression saves less than 1/16 (store raw); plens[i] = -1 when not compressed. Returns
// the payload bytes written, or -1 when out of memory.
long vv_hash_batch(const uint8_t *data, const uint32_t *segs, size_t n, const vv_bloom *bloom, int compress,
                   uint8_t *fps, int32_t *plens, uint8_t *payloads);

enum { VV_CODEC_RAW = 0, VV_CODEC_LZ4 = 1 };

// Outcome of one record; detail holds errno for VV_E_IO and bytes read for VV_E_SHORT.
enum { VV_OK = 0, VV_E_IO = 1, VV_E_SHORT = 2, VV_E_DECODE = 3, VV_E_LENGTH = 4, VV_E_HASH = 5 };

typedef struct {
  int fd;
  uint64_t pos;       // payload position in the file
  uint32_t stored;    // payload bytes
  uint32_t raw;       // decoded bytes
  uint32_t codec;
  uint8_t *dst;       // raw bytes of room
  const uint8_t *fp;  // expected fingerprint
  int32_t status;
  int32_t detail;
} vv_record;

// Reads (coalescing neighbours in one file into one read), decodes and verifies each record
// into its dst. Returns the number of records that failed.
size_t vv_decode_batch(vv_record *recs, size_t n);

// Segments received from a sender (the transfer protocol's receiver, src/store/remote-ingest.ts):
// item i is (offset in src, payload length, codec, plain length). Each is decoded (LZ4, its
// length prefix checked against the plain length first) or copied into plain, back to back
// from 0, then all are hashed into fps (32 bytes each). Stops at the first that does not decode:
// status[2 i] is VV_OK, VV_E_DECODE (detail -1: shorter than the length prefix) or VV_E_LENGTH
// (detail the claimed length, or the raw payload's length). Returns the number decoded and
// hashed (those before the first failure), or -1 when out of memory. A segment sent raw is
// LZ4ed into payloads as vv_hash_batch does (plens[i] its length, -2 when that saves less than
// 1/16: store raw); plens[i] = -1 for one sent as LZ4 (its payload is stored as sent).
long vv_accept_batch(const uint8_t *src, const uint32_t *items, size_t n, uint8_t *plain, uint8_t *fps,
                     int32_t *status, int32_t *plens, uint8_t *payloads);

#endif
