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
  close(): Promise<void>;
}
