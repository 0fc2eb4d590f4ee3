// N-API entry points of the codec: BLAKE3 and LZ4 for one buffer (synchronous, for tree nodes
// and checks), and the batch operations of batch.h run on the libuv thread pool
// (napi_async_work), so hashing, compression and decoding use every core without JavaScript
// worker threads. Buffers handed to an async call are referenced until its callback runs; the
// caller must not change them meanwhile.

#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "blake3.h"
#include "lz4.h"
#include "napi_util.h"

#define CHECK(call)                     \
  do {                                  \
    if ((call) != napi_ok) return NULL; \
  } while (0)

// blake3(data: Uint8Array): Buffer
static napi_value blake3_one(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "blake3(data) takes 1 argument")) return NULL;
  size_t len;
  const uint8_t *data = vv_typed(env, argv[0], napi_uint8_array, "data must be a Uint8Array", &len);
  if (!data) return NULL;
  uint8_t out[32];
  if (vv_blake3(data, len, out) != 0) return vv_fail_range(env, "out of memory");
  napi_value buf;
  CHECK(napi_create_buffer_copy(env, 32, out, NULL, &buf));
  return buf;
}

// Checks a segment list against the data it points into; returns the segment count or -1.
static long check_segs(napi_env env, size_t data_len, const uint32_t *segs, size_t segs_len) {
  if (segs_len % 2) {
    vv_fail_range(env, "segs must hold (offset, length) pairs");
    return -1;
  }
  for (size_t i = 0; i < segs_len; i += 2) {
    if ((uint64_t)segs[i] + segs[i + 1] > data_len) {
      vv_fail_range(env, "a segment runs past the end of data");
      return -1;
    }
  }
  return (long)(segs_len / 2);
}

// blake3Many(data: Uint8Array, segs: Uint32Array, out: Uint8Array): void
static napi_value blake3_many(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!vv_args(env, info, 3, argv, "blake3Many(data, segs, out) takes 3 arguments")) return NULL;
  size_t dl, sl, ol;
  const uint8_t *data = vv_typed(env, argv[0], napi_uint8_array, "data must be a Uint8Array", &dl);
  if (!data) return NULL;
  const uint32_t *segs = vv_typed(env, argv[1], napi_uint32_array, "segs must be a Uint32Array", &sl);
  if (!segs) return NULL;
  uint8_t *out = vv_typed(env, argv[2], napi_uint8_array, "out must be a Uint8Array", &ol);
  if (!out) return NULL;
  long n = check_segs(env, dl, segs, sl);
  if (n < 0) return NULL;
  if (ol < (size_t)n * 32) return vv_fail_range(env, "out needs 32 bytes per segment");
  if (vv_blake3_many(data, segs, (size_t)n, out) != 0) return vv_fail_range(env, "out of memory");
  return NULL;
}

// blake3Impl(): string
static napi_value blake3_impl(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value s;
  CHECK(napi_create_string_utf8(env, vv_blake3_impl(), NAPI_AUTO_LENGTH, &s));
  return s;
}

// blake3Force(name?: string): boolean -- tests: run a given kernel (undefined: the best).
static napi_value blake3_force(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[32];
  int ok;
  napi_valuetype t = napi_undefined;
  if (argc > 0) CHECK(napi_typeof(env, argv[0], &t));
  if (t == napi_string) {
    size_t got;
    CHECK(napi_get_value_string_utf8(env, argv[0], name, sizeof name, &got));
    ok = vv_blake3_force(name);
  } else {
    ok = vv_blake3_force(NULL);
  }
  napi_value r;
  CHECK(napi_get_boolean(env, ok, &r));
  return r;
}

// lz4Compress(src: Uint8Array, dst: Uint8Array): number -- payload length, 0 if it does not fit
static napi_value lz4_compress(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "lz4Compress(src, dst) takes 2 arguments")) return NULL;
  size_t sl, dl;
  const uint8_t *src = vv_typed(env, argv[0], napi_uint8_array, "src must be a Uint8Array", &sl);
  if (!src) return NULL;
  uint8_t *dst = vv_typed(env, argv[1], napi_uint8_array, "dst must be a Uint8Array", &dl);
  if (!dst) return NULL;
  if (sl > 0x7fffffffu) return vv_fail_range(env, "src must be shorter than 2^31 bytes");
  static __thread vv_lz4_state st;  // per thread: the compressor keeps positions in it
  size_t n = vv_lz4_compress(&st, src, sl, dst, dl);
  napi_value r;
  CHECK(napi_create_double(env, (double)n, &r));
  return r;
}

// lz4Decompress(src: Uint8Array, dst: Uint8Array): number -- decoded length, -1 if malformed
static napi_value lz4_decompress(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "lz4Decompress(src, dst) takes 2 arguments")) return NULL;
  size_t sl, dl;
  const uint8_t *src = vv_typed(env, argv[0], napi_uint8_array, "src must be a Uint8Array", &sl);
  if (!src) return NULL;
  uint8_t *dst = vv_typed(env, argv[1], napi_uint8_array, "dst must be a Uint8Array", &dl);
  if (!dst) return NULL;
  long n = vv_lz4_decompress(src, sl, dst, dl);
  napi_value r;
  CHECK(napi_create_double(env, (double)n, &r));
  return r;
}

// lz4Claimed(src: Uint8Array): number -- the length a payload's prefix claims (-1: no prefix)
static napi_value lz4_claimed(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "lz4Claimed(src) takes 1 argument")) return NULL;
  size_t sl;
  const uint8_t *src = vv_typed(env, argv[0], napi_uint8_array, "src must be a Uint8Array", &sl);
  if (!src) return NULL;
  napi_value r;
  CHECK(napi_create_double(env, (double)vv_lz4_claimed(src, sl), &r));
  return r;
}

// ---- async work --------------------------------------------------------------------------

#define MAX_REFS 8

typedef struct job job;
struct job {
  napi_async_work work;
  napi_ref refs[MAX_REFS];
  int nrefs;
  napi_ref callback;
  void (*run)(job *);
  double result;
  // hash batch
  const uint8_t *data;
  const uint32_t *segs;
  size_t n;
  vv_bloom bloom;
  int compress;
  uint8_t *fps;
  int32_t *plens;
  uint8_t *payloads;
  // accept batch
  const uint32_t *items;
  uint8_t *plain;
  // decode batch
  vv_record *recs;
  int32_t *status;
};

static void job_execute(napi_env env, void *data) {
  (void)env;
  job *j = data;
  j->run(j);
}

static void job_complete(napi_env env, napi_status status, void *data) {
  job *j = data;
  napi_value cb, undef, argv[2];
  napi_get_reference_value(env, j->callback, &cb);
  napi_get_undefined(env, &undef);
  if (status != napi_ok || j->result < 0) {
    napi_value msg;
    napi_create_string_utf8(env, status != napi_ok ? "the batch was cancelled" : "out of memory in a codec batch",
                            NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &argv[0]);
    argv[1] = undef;
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_double(env, j->result, &argv[1]);
  }
  for (int i = 0; i < j->nrefs; i++) napi_delete_reference(env, j->refs[i]);
  napi_delete_reference(env, j->callback);
  napi_delete_async_work(env, j->work);
  free(j->recs);
  free(j);
  napi_call_function(env, undef, cb, 2, argv, NULL);
}

// Keeps argument values alive until the job completes, then queues it.
static napi_value job_queue(napi_env env, job *j, const napi_value *keep, int nkeep, napi_value cb, const char *name) {
  napi_valuetype t;
  if (napi_typeof(env, cb, &t) != napi_ok || t != napi_function) {
    free(j->recs);
    free(j);
    return vv_fail_type(env, "the last argument must be a callback");
  }
  for (int i = 0; i < nkeep; i++) napi_create_reference(env, keep[i], 1, &j->refs[j->nrefs++]);
  napi_create_reference(env, cb, 1, &j->callback);
  napi_value res;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &res);
  CHECK(napi_create_async_work(env, NULL, res, job_execute, job_complete, j, &j->work));
  CHECK(napi_queue_async_work(env, j->work));
  return NULL;
}

static void run_hash(job *j) {
  j->result = (double)vv_hash_batch(j->data, j->segs, j->n, &j->bloom, j->compress, j->fps, j->plens, j->payloads);
}

// hashBatch(data, segs, bloomWords | null, log2Bits, probes, compress, fps, plens, payloads,
//           cb(err, payloadBytes))
static napi_value hash_batch(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  if (!vv_args(env, info, 10, argv, "hashBatch takes 10 arguments")) return NULL;
  job *j = calloc(1, sizeof *j);
  if (!j) return vv_fail_range(env, "out of memory");
  size_t dl, sl, fl, pl, yl, wl = 0;
  j->data = vv_typed(env, argv[0], napi_uint8_array, "data must be a Uint8Array", &dl);
  if (!j->data) goto bad;
  j->segs = vv_typed(env, argv[1], napi_uint32_array, "segs must be a Uint32Array", &sl);
  if (!j->segs) goto bad;
  long n = check_segs(env, dl, j->segs, sl);
  if (n < 0) goto bad;
  j->n = (size_t)n;
  napi_valuetype t;
  CHECK(napi_typeof(env, argv[2], &t));
  if (t != napi_null && t != napi_undefined) {
    j->bloom.words = vv_typed(env, argv[2], napi_uint32_array, "bloom must be a Uint32Array or null", &wl);
    if (!j->bloom.words) goto bad;
    uint32_t log2bits, probes;
    if (napi_get_value_uint32(env, argv[3], &log2bits) != napi_ok || napi_get_value_uint32(env, argv[4], &probes) != napi_ok) {
      vv_fail_type(env, "log2Bits and probes must be numbers");
      goto bad;
    }
    if (log2bits < 5 || log2bits > 32 || ((uint64_t)1 << log2bits) > (uint64_t)wl * 32 || probes > 64) {
      vv_fail_range(env, "bloom shape does not match its words");
      goto bad;
    }
    j->bloom.mask = log2bits >= 32 ? 0xffffffffu : (uint32_t)((1ull << log2bits) - 1);
    j->bloom.probes = probes;
  }
  bool compress;
  CHECK(napi_get_value_bool(env, argv[5], &compress));
  j->compress = compress;
  j->fps = vv_typed(env, argv[6], napi_uint8_array, "fps must be a Uint8Array", &fl);
  if (!j->fps) goto bad;
  j->plens = vv_typed(env, argv[7], napi_int32_array, "plens must be an Int32Array", &pl);
  if (!j->plens) goto bad;
  j->payloads = vv_typed(env, argv[8], napi_uint8_array, "payloads must be a Uint8Array", &yl);
  if (!j->payloads) goto bad;
  if (fl < j->n * 32 || pl < j->n) {
    vv_fail_range(env, "fps needs 32 bytes and plens 1 entry per segment");
    goto bad;
  }
  uint64_t total = 0;
  for (size_t i = 0; i < j->n; i++) total += j->segs[2 * i + 1];
  if (compress && yl < total) {
    vv_fail_range(env, "payloads needs room for the sum of the segment lengths");
    goto bad;
  }
  j->run = run_hash;
  napi_value keep[6] = {argv[0], argv[1], argv[2], argv[6], argv[7], argv[8]};
  return job_queue(env, j, keep, 6, argv[9], "vmvault.hashBatch");
bad:
  free(j);
  return NULL;
}

static void run_decode(job *j) {
  vv_decode_batch(j->recs, j->n);
  for (size_t i = 0; i < j->n; i++) {
    j->status[2 * i] = j->recs[i].status;
    j->status[2 * i + 1] = j->recs[i].detail;
  }
  j->result = 0;
}

#define ITEM 7

// decodeBatch(items: Float64Array (fd, payload pos, stored, raw, codec, target, offset) per
//             record, fps: Uint8Array, targets: Uint8Array[], status: Int32Array (2 per record),
//             cb(err))
static napi_value decode_batch(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!vv_args(env, info, 5, argv, "decodeBatch takes 5 arguments")) return NULL;
  size_t il, fl, stl;
  const double *items = vv_typed(env, argv[0], napi_float64_array, "items must be a Float64Array", &il);
  if (!items) return NULL;
  const uint8_t *fps = vv_typed(env, argv[1], napi_uint8_array, "fps must be a Uint8Array", &fl);
  if (!fps) return NULL;
  int32_t *status = vv_typed(env, argv[3], napi_int32_array, "status must be an Int32Array", &stl);
  if (!status) return NULL;
  if (il % ITEM) return vv_fail_range(env, "items holds 7 numbers per record");
  size_t n = il / ITEM;
  if (fl < n * 32 || stl < n * 2) return vv_fail_range(env, "fps needs 32 bytes and status 2 entries per record");
  bool is_array;
  uint32_t ntargets;
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array) return vv_fail_type(env, "targets must be an array");
  CHECK(napi_get_array_length(env, argv[2], &ntargets));
  if (ntargets == 0 || ntargets > MAX_REFS - 3) return vv_fail_range(env, "targets must hold 1 to 5 buffers");
  uint8_t *tptr[MAX_REFS];
  size_t tlen[MAX_REFS];
  napi_value tval[MAX_REFS];
  for (uint32_t t = 0; t < ntargets; t++) {
    CHECK(napi_get_element(env, argv[2], t, &tval[t]));
    tptr[t] = vv_typed(env, tval[t], napi_uint8_array, "targets must be Uint8Arrays", &tlen[t]);
    if (!tptr[t]) return NULL;
  }
  job *j = calloc(1, sizeof *j);
  if (!j) return vv_fail_range(env, "out of memory");
  j->recs = calloc(n ? n : 1, sizeof *j->recs);
  if (!j->recs) {
    free(j);
    return vv_fail_range(env, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    const double *it = items + ITEM * i;
    double fd = it[0], pos = it[1], stored = it[2], raw = it[3], codec = it[4], target = it[5], off = it[6];
    if (!(fd >= 0 && fd < 1 << 30 && pos >= 0 && pos < 9e15 && stored >= 0 && stored < 1u << 31 && raw >= 0 &&
          raw < 1u << 31 && (codec == 0 || codec == 1) && target >= 0 && target < ntargets && off >= 0 &&
          off + raw <= (double)tlen[(int)target])) {
      free(j->recs);
      free(j);
      return vv_fail_range(env, "a record does not fit its target or has an invalid field");
    }
    j->recs[i] = (vv_record){(int)fd, (uint64_t)pos, (uint32_t)stored, (uint32_t)raw, (uint32_t)codec,
                             tptr[(int)target] + (size_t)off, fps + 32 * i, 0, 0};
  }
  j->n = n;
  j->status = status;
  j->run = run_decode;
  napi_value keep[MAX_REFS];
  int nk = 0;
  keep[nk++] = argv[1];
  keep[nk++] = argv[3];
  for (uint32_t t = 0; t < ntargets; t++) keep[nk++] = tval[t];
  return job_queue(env, j, keep, nk, argv[4], "vmvault.decodeBatch");
}

static void run_accept(job *j) {
  j->result = (double)vv_accept_batch(j->data, j->items, j->n, j->plain, j->fps, j->status, j->plens, j->payloads);
}

// acceptBatch(src: Uint8Array, items: Uint32Array (offset in src, payload length, codec, plain
//             length) per segment, plain: Uint8Array, fps: Uint8Array, status: Int32Array
//             (2 per segment), plens: Int32Array (1 per segment), payloads: Uint8Array (room:
//             the plain lengths of the raw ones), cb(err, decoded)) -- batch.h, vv_accept_batch
static napi_value accept_batch(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!vv_args(env, info, 8, argv, "acceptBatch takes 8 arguments")) return NULL;
  size_t sl, il, pl, fl, stl, ql, yl;
  const uint8_t *src = vv_typed(env, argv[0], napi_uint8_array, "src must be a Uint8Array", &sl);
  if (!src) return NULL;
  const uint32_t *items = vv_typed(env, argv[1], napi_uint32_array, "items must be a Uint32Array", &il);
  if (!items) return NULL;
  uint8_t *plain = vv_typed(env, argv[2], napi_uint8_array, "plain must be a Uint8Array", &pl);
  if (!plain) return NULL;
  uint8_t *fps = vv_typed(env, argv[3], napi_uint8_array, "fps must be a Uint8Array", &fl);
  if (!fps) return NULL;
  int32_t *status = vv_typed(env, argv[4], napi_int32_array, "status must be an Int32Array", &stl);
  if (!status) return NULL;
  int32_t *plens = vv_typed(env, argv[5], napi_int32_array, "plens must be an Int32Array", &ql);
  if (!plens) return NULL;
  uint8_t *payloads = vv_typed(env, argv[6], napi_uint8_array, "payloads must be a Uint8Array", &yl);
  if (!payloads) return NULL;
  if (il % 4) return vv_fail_range(env, "items holds 4 numbers per segment");
  size_t n = il / 4;
  if (fl < n * 32 || stl < n * 2 || ql < n) return vv_fail_range(env, "fps needs 32 bytes, status 2 entries and plens 1 per segment");
  uint64_t total = 0, rawTotal = 0;
  for (size_t i = 0; i < n; i++) {
    const uint32_t *it = items + 4 * i;
    if ((uint64_t)it[0] + it[1] > sl || (it[2] != VV_CODEC_RAW && it[2] != VV_CODEC_LZ4)) {
      return vv_fail_range(env, "a segment's payload runs past src or has an unknown codec");
    }
    total += it[3];
    if (it[2] == VV_CODEC_RAW) rawTotal += it[3];
  }
  if (total > pl || total > 0xffffffffu) return vv_fail_range(env, "plain needs room for the sum of the plain lengths");
  if (rawTotal > yl) return vv_fail_range(env, "payloads needs room for the plain lengths of the raw segments");
  job *j = calloc(1, sizeof *j);
  if (!j) return vv_fail_range(env, "out of memory");
  j->data = src;
  j->items = items;
  j->n = n;
  j->plain = plain;
  j->fps = fps;
  j->status = status;
  j->plens = plens;
  j->payloads = payloads;
  j->run = run_accept;
  napi_value keep[7] = {argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6]};
  return job_queue(env, j, keep, 7, argv[7], "vmvault.acceptBatch");
}

napi_value vv_register_codec(napi_env env, napi_value exports) {
  const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"blake3", blake3_one},         {"blake3Many", blake3_many},       {"blake3Impl", blake3_impl},
             {"blake3Force", blake3_force},  {"lz4Compress", lz4_compress},     {"lz4Decompress", lz4_decompress},
             {"lz4Claimed", lz4_claimed},    {"hashBatch", hash_batch},         {"decodeBatch", decode_batch},
             {"acceptBatch", accept_batch}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value f;
    CHECK(napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f));
    CHECK(napi_set_named_property(env, exports, fns[i].name, f));
  }
  return exports;
}
