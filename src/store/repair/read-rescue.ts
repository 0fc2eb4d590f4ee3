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
// Batching: damaged segments asked for at about the same time (the failures of one decode
// batch, and those of the other reads in flight that fail before the next turn of the event
// loop) are searched together: each fetcher is asked for all of them in one request
// (`fetchMany`: one round trip to a clone appliance, one pass over an archive), the next
// fetcher only for what the one before lacked. A fetcher without `fetchMany` is asked one
// segment at a time, as before.
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
  /** Several at once, an answer per fingerprint in order (policy/segment-source.ts). Optional. */
  fetchMany?(fingerprints: Buffer[]): Promise<Array<Buffer | null>>;
}

/** Segments asked of a fetcher in one request at most. */
export const FETCH_BATCH = 512;

/** A fetcher's answers for `fps`: its batch form when it has one, else one request each. */
export async function fetchBatch(f: SegmentFetcher, fps: Buffer[]): Promise<Array<Buffer | null>> {
  if (fps.length === 0) return [];
  if (!f.fetchMany) return Promise.all(fps.map((fp) => f.fetch(fp)));
  const got = await f.fetchMany(fps);
  if (!Array.isArray(got) || got.length !== fps.length) throw new Error(`answered ${Array.isArray(got) ? got.length : 'no list'} for ${fps.length} segments`);
  return got;
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
  /** Wanted and not yet searched: searched together at the next turn of the event loop. */
  private queue: Want[] = [];
  /** Requests made of fetchers (batches count one): for the job log and the tests. */
  requests = 0;

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
   * Concurrent calls for one fingerprint share one search; calls made before the event loop
   * turns are searched in one batch.
   */
  rescue(fp: Buffer, kind: 'data' | 'node', err: unknown): Promise<Buffer> {
    const hit = this.kept.get(fp);
    if (hit) return Promise.resolve(hit);
    const gone = this.missing.get(fp);
    if (gone) return Promise.reject(gone);
    if (!rescuable(err)) return Promise.reject(err);
    let p = this.running.get(fp);
    if (!p) {
      const key = Buffer.from(fp);
      p = new Promise<Buffer>((resolve, reject) => {
        if (this.queue.length === 0) setImmediate(() => void this.flush());
        this.queue.push({ fp: key, kind, err: err as PrimaryError, resolve, reject });
      });
      p.then(
        () => this.running.delete(key),
        () => this.running.delete(key),
      );
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
    const [got] = await this.refetchMany([fp]);
    return got;
  }

  /** refetch for several segments, each fetcher asked in batches for what the ones before lacked. */
  async refetchMany(fps: Buffer[]): Promise<Array<{ bytes: Buffer; source: string } | null>> {
    const out: Array<{ bytes: Buffer; source: string } | null> = fps.map(() => null);
    for (let from = 0; from < fps.length; from += FETCH_BATCH) {
      let left = Array.from({ length: Math.min(FETCH_BATCH, fps.length - from) }, (_, k) => from + k);
      for (const f of this.fetchers) {
        if (left.length === 0) break;
        this.requests += f.fetchMany ? 1 : left.length;
        const got = await fetchBatch(
          f,
          left.map((i) => fps[i]),
        ).catch(() => null);
        if (!got) continue;
        const next: number[] = [];
        left.forEach((i, k) => {
          const b = got[k];
          if (b && fingerprint(b).equals(fps[i])) out[i] = { bytes: b, source: f.name };
          else next.push(i);
        });
        left = next;
      }
    }
    return out;
  }

  /** Searches what was queued, FETCH_BATCH segments a request at most. */
  private async flush(): Promise<void> {
    const all = this.queue;
    this.queue = [];
    for (let from = 0; from < all.length; from += FETCH_BATCH) await this.search(all.slice(from, from + FETCH_BATCH));
  }

  private async search(wants: Want[]): Promise<void> {
    const passed = new Map<Want, Array<{ source: string; why: string }>>(wants.map((w) => [w, []]));
    let left = wants;
    for (const f of this.fetchers) {
      if (left.length === 0) break;
      let got: Array<Buffer | null>;
      this.requests += f.fetchMany ? 1 : left.length;
      try {
        got = await fetchBatch(
          f,
          left.map((w) => w.fp),
        );
      } catch (e) {
        for (const w of left) passed.get(w)!.push({ source: f.name, why: `could not be read (${(e as Error).message})` });
        continue;
      }
      const next: Want[] = [];
      for (let k = 0; k < left.length; k++) {
        const w = left[k];
        const b = got[k];
        if (!b) {
          passed.get(w)!.push({ source: f.name, why: 'does not hold it' });
          next.push(w);
        } else if (!fingerprint(b).equals(w.fp)) {
          // An untrusted copy: its bytes are not this segment, whatever it claims.
          passed.get(w)!.push({ source: f.name, why: `returned ${b.length} bytes that do not hash to it (refused)` });
          next.push(w);
        } else {
          this.served(w, b, f.name, passed.get(w)!);
        }
      }
      left = next;
    }
    for (const w of left) this.notFound(w, passed.get(w)!);
  }

  private served(w: Want, got: Buffer, source: string, passedOver: Array<{ source: string; why: string }>): void {
    const primary = w.err;
    const d: Damage = {
      fingerprint: fpHex(w.fp),
      kind: w.kind,
      code: primary.code,
      container: primary.details?.container as number | undefined,
      offset: primary.details?.offset as number | undefined,
      reason: primary.message,
      servedBy: source,
      passedOver,
    };
    this.damage.push(d);
    if (this.keptBytes + got.length <= this.keepBytes) {
      this.kept.set(w.fp, got);
      this.keptBytes += got.length;
    }
    try {
      this.opts.onDamage?.(d);
    } finally {
      w.resolve(got);
    }
  }

  private notFound(w: Want, passedOver: Array<{ source: string; why: string }>): void {
    const primary = w.err;
    const tried = passedOver.length === 0 ? 'no other copy was given' : `no other copy has it: ${passedOver.map((p) => `${p.source} ${p.why}`).join('; ')}`;
    const final = vmError(primary.code, `${primary.message}; ${tried}`, {
      ...(primary.details ?? {}),
      fingerprint: fpHex(w.fp),
      sources: passedOver,
    }, primary);
    this.finals.add(final);
    this.missing.set(w.fp, final);
    w.reject(final);
  }
}

type PrimaryError = Error & { code: ErrorCode; details?: Record<string, unknown> };

/** A damaged segment waiting for the next batch search. */
interface Want {
  fp: Buffer;
  kind: 'data' | 'node';
  err: PrimaryError;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}
