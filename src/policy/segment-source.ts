// Another copy of a restore point's segments (issue 14): a clone on a second appliance, a
// directory archive, or a DR copy. A segment is named by its fingerprint, so a healthy copy of a
// segment the primary has lost is found by name anywhere, and checked (re-hashed against that
// name) by the caller before it is used or replaces anything: a source is untrusted.

export interface SegmentSource {
  /** For the job log: "clone site-b", "archive dr-1", ... */
  readonly name: string;
  /**
   * The segment's plain (decompressed) bytes, or null when this copy does not hold it. The
   * bytes are unverified. Throws only when the copy cannot be reached or read at all.
   */
  fetch(fingerprint: Buffer): Promise<Buffer | null>;
  /**
   * Several segments in one request (one round trip to another appliance, one pass over an
   * archive's containers): an answer per fingerprint, in order, as `fetch` gives it. Optional:
   * a source without it is asked one segment at a time (`fetchAll`).
   */
  fetchMany?(fingerprints: Buffer[]): Promise<Array<Buffer | null>>;
  close(): Promise<void>;
}

/** A source's answers for several segments: its batch form when it has one, else one by one. */
export function fetchAll(source: Pick<SegmentSource, 'fetch' | 'fetchMany'>, fps: Buffer[]): Promise<Array<Buffer | null>> {
  if (fps.length === 0) return Promise.resolve([]);
  if (source.fetchMany) return source.fetchMany(fps);
  return Promise.all(fps.map((fp) => source.fetch(fp)));
}
