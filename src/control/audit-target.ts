// What an audited call acted on: the route's parameters and the scalar fields of the body and
// query (names, flags such as force). Bodies hold names only, except the transfer protocol's
// binary frames (up to LIMITS.frameBytes): a Buffer is not a record of fields, and walking it
// with Object.entries built one [key, value] pair per byte, several MiB of garbage per frame
// (issue 12: the appliance stalled for seconds in GC and grew to GiBs while an agent sent).
// So only plain objects are read, and only their first FIELDS keys; anything long is cut so
// a hostile request cannot bloat the log.

/** Fields read per source at most. */
export const FIELDS = 16;

export function auditTarget(params: unknown, body: unknown, query: unknown): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const src of [query, body, params]) {
    if (src === null || typeof src !== 'object' || Array.isArray(src) || ArrayBuffer.isView(src) || src instanceof ArrayBuffer) continue;
    let n = 0;
    for (const k in src) {
      if (!Object.prototype.hasOwnProperty.call(src, k)) continue;
      if (n++ >= FIELDS) break;
      // Secrets (the SMB password, a clone destination's token) never reach the audit log.
      if (/password|secret|token/i.test(k)) continue;
      const v = (src as Record<string, unknown>)[k];
      if (typeof v === 'string') out[k.slice(0, 64)] = v.slice(0, 256);
      else if (typeof v === 'number' || typeof v === 'boolean') out[k.slice(0, 64)] = v;
    }
  }
  return out;
}
