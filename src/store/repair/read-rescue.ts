// Reading past damage with another copy's help. A read given a ReadRescue does not stop at a
// segment the primary cannot give back (CORRUPT_SEGMENT, an IO read error, MISSING_SEGMENT): it
// asks the rescue's fetchers, in order, for that fingerprint, re-hashes what comes back, and
// uses it only if it hashes to the fingerprint. Every segment so served is recorded (Damage),
// so the caller can say what happened and repair the primary (repair/segment-repair.ts).
//
// The store knows nothing of where the fetchers' bytes come from (a clone on another
// appliance, a directory archive, a DR copy): a fetcher is a name and a fetch function, which
// is what policy/segment-source.ts's SegmentSource already is. A fetcher is untrusted: bytes
// that do not hash to the fingerprint are refused and the next fetcher asked.
//
// Contract: bytes a rescued read returns have been re-hashed as every read's are; a segment no
// fetcher holds fails the read with the primary's own error code, the message naming the
// segment and every fetcher tried with its answer; nothing the read did changes the store.

import { isVmvaultError, vmError, type ErrorCode } from '../../errors.js';
import { fingerprint, fpHex } from '../codec/fingerprint.js';
import { FpMap } from '../index/fp-map.js';

/** Another copy's segments by fingerprint: plain bytes (unverified) or null if it lacks one. */
export interface SegmentFetcher {
  readonly name: string;
  fetch(fingerprint: Buffer): Promise<Buffer | null>;
}

/** One damaged segment of the primary and the copy that served it. */
export interface Damage {
  /** Hex fingerprint. */
  fingerprint: string;
  /** A tree node or a data segment. */
  kind: 'data' | 'node';
  /** What the primary said: CORRUPT_SEGMENT, IO or MISSING_SEGMENT. */
  code: ErrorCode;
  container?: number;
  offset?: number;
  /** The primary's error message. */
  reason: string;
  /** The fetcher whose bytes were used. */
  servedBy: string;
  /** Fetchers asked before it, and why each was passed over. */
  passedOver: Array<{ source: string; why: string }>;
}

export interface ReadRescueOptions {
  /** Called once per damaged segment, when a copy has served it (for the job log). */
  onDamage?: (d: Damage) => void;
  /** Rescued bytes kept for a repair afterwards (default 256 MiB); beyond, repair fetches again. */
  keepBytes?: number;
}

/** Codes of a primary read failure that another copy may mend. */
export const RESCUABLE: readonly ErrorCode[] = ['CORRUPT_SEGMENT', 'IO', 'MISSING_SEGMENT'];

export function rescuable(err: unknown): boolean {
  return isVmvaultError(err) && RESCUABLE.includes(err.code);
}

export class ReadRescue {
  readonly damage: Damage[] = [];
  private readonly kept = new FpMap<Buffer>();
  private keptBytes = 0;
  private readonly keepBytes: number;
  private readonly running = new FpMap<Promise<Buffer>>();
  /** Segments no fetcher had: asked once per rescue, the same error after. */
  private readonly missing = new FpMap<Error>();
  private readonly finals = new WeakSet<object>();

  constructor(
    readonly fetchers: readonly SegmentFetcher[],
    private readonly opts: ReadRescueOptions = {},
  ) {
    this.keepBytes = opts.keepBytes ?? 256 * 1024 * 1024;
  }

  /** Verified bytes of a segment this rescue already served (and kept), if any. */
  known(fp: Uint8Array): Buffer | undefined {
    return this.kept.get(fp);
  }

  /**
   * Healthy bytes of `fp` from the first fetcher whose bytes hash to it, after the primary
   * failed with `err`. Throws `err`'s code naming every fetcher tried when none has them.
   * Concurrent calls for one fingerprint share one search.
   */
  rescue(fp: Buffer, kind: 'data' | 'node', err: unknown): Promise<Buffer> {
    const hit = this.kept.get(fp);
    if (hit) return Promise.resolve(hit);
    const gone = this.missing.get(fp);
    if (gone) return Promise.reject(gone);
    let p = this.running.get(fp);
    if (!p) {
      const key = Buffer.from(fp);
      p = this.search(key, kind, err).finally(() => this.running.delete(key));
      this.running.set(key, p);
    }
    return p;
  }

  /** Whether `err` is this rescue's final word on a segment (no fetcher had it): not to be retried. */
  isFinal(err: unknown): boolean {
    return typeof err === 'object' && err !== null && this.finals.has(err);
  }

  /** Asks the fetchers for `fp` again (a repair whose bytes were not kept). Null if none holds it. */
  async refetch(fp: Buffer): Promise<{ bytes: Buffer; source: string } | null> {
    for (const f of this.fetchers) {
      const got = await f.fetch(fp).catch(() => null);
      if (got && fingerprint(got).equals(fp)) return { bytes: got, source: f.name };
    }
    return null;
  }

  private async search(fp: Buffer, kind: 'data' | 'node', err: unknown): Promise<Buffer> {
    if (!rescuable(err)) throw err;
    const primary = err as Error & { code: ErrorCode; details?: Record<string, unknown> };
    const passedOver: Array<{ source: string; why: string }> = [];
    for (const f of this.fetchers) {
      let got: Buffer | null;
      try {
        got = await f.fetch(fp);
      } catch (e) {
        passedOver.push({ source: f.name, why: `could not be read (${(e as Error).message})` });
        continue;
      }
      if (!got) {
        passedOver.push({ source: f.name, why: 'does not hold it' });
        continue;
      }
      if (!fingerprint(got).equals(fp)) {
        // An untrusted copy: its bytes are not this segment, whatever it claims.
        passedOver.push({ source: f.name, why: `returned ${got.length} bytes that do not hash to it (refused)` });
        continue;
      }
      const d: Damage = {
        fingerprint: fpHex(fp),
        kind,
        code: primary.code,
        container: primary.details?.container as number | undefined,
        offset: primary.details?.offset as number | undefined,
        reason: primary.message,
        servedBy: f.name,
        passedOver,
      };
      this.damage.push(d);
      if (this.keptBytes + got.length <= this.keepBytes) {
        this.kept.set(fp, got);
        this.keptBytes += got.length;
      }
      this.opts.onDamage?.(d);
      return got;
    }
    const tried = passedOver.length === 0 ? 'no other copy was given' : `no other copy has it: ${passedOver.map((p) => `${p.source} ${p.why}`).join('; ')}`;
    const final = vmError(primary.code, `${primary.message}; ${tried}`, {
      ...(primary.details ?? {}),
      fingerprint: fpHex(fp),
      sources: passedOver,
    }, primary);
    this.finals.add(final);
    this.missing.set(fp, final);
    throw final;
  }
}
