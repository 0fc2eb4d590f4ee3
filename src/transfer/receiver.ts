// The receiving side of the fingerprint-first protocol (PROTOCOL.md): sessions, the answers to
// "which of these do you lack" within the caller's scope, segments re-hashed and stored,
// recipes built into a file version without the data crossing again, and the version
// installed at the share path through the namespace (never the mount) when the send finishes.
//
// Scope (the confirmation attack): an agent learns "known" only for fingerprints its scope
// already references: the segments of the target share's files and restore points (a cached
// set per share, rebuilt when the share's snapshots change and grown by every finished send),
// plus what its task has sent. Anything else is "missing": the agent sends it and the store
// dedups it at no space. A recipe may name only such segments too, so its success says
// nothing about other shares. Trusted agents (and the admin token) get store-wide answers.

import { randomBytes } from 'node:crypto';
import { vmError } from '../errors.js';
import { Mutex } from '../kv/mutex.js';
import type { Namespace } from '../namespace/namespace.js';
import type { FileVersion, RecipeWriter, WriteHold } from '../store/store.js';
import { EMPTY_VERSION } from '../store/store.js';
import { packParams } from '../store/segmenter/segmenter.js';
import { decodeQuery, decodeRecipe, decodeSegments, encodeQueryReply, SegmentCodec } from './frames.js';
import type { BoundariesReply, ChunkerInfo, FinishReply, OpenReply, OpenRequest, RecipeReply, Region, SegmentsReply } from './messages.js';
import { PROTOCOL_NEWEST, PROTOCOL_VERSION } from './frames.js';

export type TransferCaller = { kind: 'admin' } | { kind: 'agent'; name: string; trusted?: boolean; replication?: boolean };

export interface ReceiverOptions {
  log?: (line: string) => void;
  /** A session unused this long is dropped (its task's sent set lives on for TASK_KEEP_MS). */
  idleMs?: number;
  /** The newest protocol version spoken (default PROTOCOL_NEWEST; tests stand for an older appliance with 1). */
  newestProtocol?: number;
  /** May this caller write this target? (the agent pool narrows agents to their tasks' shares). */
  authorize?: (caller: TransferCaller, share: string, path: string, taskId: string | undefined) => void | Promise<void>;
}

/** Boundaries returned per /boundaries call. */
const BOUNDARY_BATCH = 4096;
const TASK_KEEP_MS = 60 * 60 * 1000;
const MAX_SESSIONS = 256;

interface TaskState {
  /** Fingerprints (latin1 keys) this task has sent: known to it from then on. */
  sent: Set<string>;
  touched: number;
}

interface Session {
  id: string;
  /** The version the sender opened with (frames of a newer one are refused). */
  protocol: number;
  owner: string;
  storeWide: boolean;
  share: string;
  path: string;
  size: number;
  ranges: Array<{ offset: number; length: number }> | undefined;
  taskId: string | undefined;
  /** The file's version when the session opened: what an incremental keeps, and the conflict check. */
  current: FileVersion;
  writer: RecipeWriter;
  /**
   * From open until dropped: segments sent and not yet named by the recipe, and the version
   * until it is installed (after a sync), are in no GC root (store/gc/write-holds.ts).
   */
  hold: WriteHold;
  deps: Set<number>;
  task: TaskState;
  regions: Region[];
  /** Fingerprints the recipe names (joined to the share's scope once installed). */
  named: Set<string>;
  segments: number;
  segmentsSent: number;
  lock: Mutex;
  used: number;
  done: boolean;
}

interface Scope {
  snapshots: string;
  keys: Set<string>;
}

export class TransferReceiver {
  private readonly sessions = new Map<string, Session>();
  private readonly tasks = new Map<string, TaskState>();
  private readonly scopes = new Map<string, Promise<Scope>>();
  private readonly log: (line: string) => void;
  private readonly idleMs: number;
  private readonly timer: NodeJS.Timeout;
  private readonly zeroFast: boolean;
  private readonly newest: number;

  constructor(
    private readonly ns: Namespace,
    private readonly opts: ReceiverOptions = {},
  ) {
    this.log = opts.log ?? ((l) => process.stderr.write(l + '\n'));
    this.idleMs = opts.idleMs ?? 15 * 60 * 1000;
    this.timer = setInterval(() => void this.expire(), Math.min(60_000, this.idleMs));
    this.timer.unref();
    this.zeroFast = packParams(ns.store.chunker)[5] === 1;
    this.newest = Math.min(PROTOCOL_NEWEST, Math.max(PROTOCOL_VERSION, opts.newestProtocol ?? PROTOCOL_NEWEST));
  }

  get chunker(): ChunkerInfo {
    const c = this.ns.store.chunker;
    return { algorithm: 'fastcdc-gear-v1', minSize: c.minSize, avgSize: c.avgSize, maxSize: c.maxSize };
  }

  hello(): { protocol: number; chunker: ChunkerInfo } {
    return { protocol: this.newest, chunker: this.chunker };
  }

  /** A restore point was made in `share`: its scope set is rebuilt on next use. */
  pointCreated(share: string): void {
    this.scopes.delete(share);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    for (const s of [...this.sessions.values()]) await this.drop(s);
  }

  // ---- sessions ----------------------------------------------------------------------------

  async open(caller: TransferCaller, req: OpenRequest): Promise<OpenReply> {
    if (!Number.isInteger(req.protocol) || req.protocol < PROTOCOL_VERSION || req.protocol > this.newest) {
      throw vmError('NOT_SUPPORTED', `transfer protocol ${req.protocol} is not supported (this appliance speaks ${PROTOCOL_VERSION} to ${this.newest})`);
    }
    if (!Number.isSafeInteger(req.size) || req.size < 0) throw vmError('INVALID_ARGUMENT', `size ${req.size} is not a valid file size`);
    const ranges = req.ranges?.map((r, i) => {
      if (!Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.length) || r.offset < 0 || r.length < 0 || r.offset + r.length > req.size) {
        throw vmError('INVALID_ARGUMENT', `range ${i} (${r.offset}+${r.length}) is not inside the file's ${req.size} bytes`);
      }
      return { offset: r.offset, length: r.length };
    });
    const target = `${req.share}/${req.path}`;
    await this.opts.authorize?.(caller, req.share, req.path, req.taskId);
    const owner = ownerOf(caller);
    if (req.taskId !== undefined) {
      for (const s of this.sessions.values()) {
        if (s.taskId !== req.taskId || s.owner !== owner) continue;
        if (s.share === req.share && s.path === req.path && s.size === req.size && JSON.stringify(s.ranges) === JSON.stringify(ranges)) {
          s.used = Date.now();
          s.protocol = req.protocol;
          return this.reply(s, true);
        }
        // The same task sends something else now: the old session is over.
        await s.lock.run(() => this.drop(s));
      }
    }
    if (this.sessions.size >= MAX_SESSIONS) throw vmError('CONFLICT', `the appliance has ${MAX_SESSIONS} transfer sessions open; finish some first`);
    const current = await this.ns.installer.current(target);
    const base = ranges === undefined ? EMPTY_VERSION : current;
    const regions = ranges === undefined ? (req.size > 0 ? [{ start: 0, end: req.size }] : []) : await this.regions(base, ranges, req.size);
    const storeWide = caller.kind === 'admin' || caller.trusted === true;
    if (!storeWide) await this.scope(req.share); // built now, so the first query does not wait
    const task = this.taskState(req.taskId, owner);
    const s: Session = {
      id: randomBytes(16).toString('hex'),
      protocol: req.protocol,
      owner,
      storeWide,
      share: req.share,
      path: req.path,
      size: req.size,
      ranges,
      taskId: req.taskId,
      current,
      hold: this.ns.store.holdWrites(),
      writer: this.ns.store.recipeWriter(base),
      deps: new Set(),
      task,
      regions,
      named: new Set(),
      segments: 0,
      segmentsSent: 0,
      lock: new Mutex(),
      used: Date.now(),
      done: false,
    };
    this.sessions.set(s.id, s);
    return this.reply(s, false);
  }

  private reply(s: Session, resumed: boolean): OpenReply {
    return { session: s.id, protocol: s.protocol, chunker: this.chunker, position: s.writer.position, regions: s.regions, resumed, storeWide: s.storeWide };
  }

  private taskState(taskId: string | undefined, owner: string): TaskState {
    if (taskId === undefined) return { sent: new Set(), touched: Date.now() };
    const key = `${owner}\0${taskId}`;
    let t = this.tasks.get(key);
    if (!t) {
      t = { sent: new Set(), touched: Date.now() };
      this.tasks.set(key, t);
    }
    t.touched = Date.now();
    return t;
  }

  /** The session, if it is this caller's; one lock orders its requests. */
  private async withSession<T>(caller: TransferCaller, id: string, fn: (s: Session) => Promise<T>): Promise<T> {
    const s = this.sessions.get(id);
    if (!s || s.owner !== ownerOf(caller)) throw vmError('NOT_FOUND', `no transfer session ${String(id).slice(0, 64)} (it finished, expired, or is another caller's); open one again`);
    return s.lock.run(async () => {
      if (s.done) throw vmError('NOT_FOUND', `transfer session ${id} is over`);
      s.used = Date.now();
      s.task.touched = s.used;
      return fn(s);
    });
  }

  // ---- incrementals: where the sender cuts -------------------------------------------------

  /** Per changed range: from the old boundary at or before its start, to its end. */
  private async regions(base: FileVersion, ranges: Array<{ offset: number; length: number }>, size: number): Promise<Region[]> {
    const want = ranges.filter((r) => r.length > 0).map((r) => ({ offset: r.offset, end: r.offset + r.length }));
    // The old last segment ended where the file did, not where content cut: a new size re-cuts it.
    if (size !== base.size && size > 0) want.push({ offset: Math.max(0, Math.min(size, base.size) - 1), end: size });
    const out: Region[] = [];
    for (const r of want.sort((a, b) => a.offset - b.offset)) {
      const start = await this.boundaryAtOrBefore(base, r.offset);
      const last = out[out.length - 1];
      if (last && start <= last.end) last.end = Math.max(last.end, r.end);
      else out.push({ start, end: r.end });
    }
    return out;
  }

  /** The old cut at or before `x` (a segment start; inside a zero run, a multiple of maxSize from its start). */
  private async boundaryAtOrBefore(base: FileVersion, x: number): Promise<number> {
    if (base.size === 0) return 0;
    const at = Math.min(x, base.size - 1);
    const { entry, start } = await this.ns.store.view(base).entryAt(0, at);
    if (entry.zero && this.zeroFast && at === x) {
      const max = this.ns.store.chunker.maxSize;
      return start + Math.floor((x - start) / max) * max;
    }
    return start;
  }

  async boundaries(caller: TransferCaller, id: string, from: number): Promise<BoundariesReply> {
    if (!Number.isSafeInteger(from) || from < 0) throw vmError('INVALID_ARGUMENT', `from ${from} is not an offset`);
    return this.withSession(caller, id, async (s) => {
      const base = s.ranges === undefined ? EMPTY_VERSION : s.current;
      const out: number[] = [];
      if (from >= base.size) return { boundaries: from === base.size ? [from] : [], next: null };
      const max = this.ns.store.chunker.maxSize;
      const view = this.ns.store.view(base);
      let next: number | null = null;
      for await (const { entry, start } of view.leaves(from, base.size)) {
        if (entry.zero && this.zeroFast) {
          let p = start + Math.ceil(Math.max(0, from - start) / max) * max;
          for (; p < start + entry.len; p += max) {
            if (out.length >= BOUNDARY_BATCH) break;
            out.push(p);
          }
          if (out.length >= BOUNDARY_BATCH) {
            next = p;
            break;
          }
        } else if (start >= from) {
          if (out.length >= BOUNDARY_BATCH) {
            next = start;
            break;
          }
          out.push(start);
        }
      }
      if (next === null) out.push(base.size);
      return { boundaries: out, next };
    });
  }

  // ---- what is missing -----------------------------------------------------------------------

  private scope(share: string): Promise<Scope> {
    const cached = this.scopes.get(share);
    const check = async (): Promise<Scope> => {
      const names = (await this.ns.installer.snapshotNames(share)).sort().join('/');
      if (cached) {
        const sc = await cached.catch(() => undefined);
        if (sc && sc.snapshots === names) return sc;
      }
      const building = this.buildScope(share, names);
      this.scopes.set(share, building);
      building.catch(() => this.scopes.delete(share));
      return building;
    };
    return check();
  }

  private async buildScope(share: string, names: string): Promise<Scope> {
    const keys = new Set<string>();
    const seen = new Set<string>();
    for await (const v of this.ns.installer.versionsOf(share)) {
      const k = v.root.toString('latin1') + v.size;
      if (v.size === 0 || seen.has(k)) continue;
      seen.add(k);
      for await (const { entry } of this.ns.store.view(v).leaves(0, v.size)) if (!entry.zero) keys.add(entry.fp.toString('latin1'));
    }
    return { snapshots: names, keys };
  }

  private async knownToCaller(s: Session, keys: string[]): Promise<boolean[]> {
    if (s.storeWide) return keys.map(() => true);
    const sc = await this.scope(s.share);
    return keys.map((k) => sc.keys.has(k) || s.task.sent.has(k));
  }

  async query(caller: TransferCaller, id: string, frame: Buffer): Promise<Buffer> {
    return this.withSession(caller, id, async (s) => {
      const refs = decodeQuery(frame, this.ns.store.chunker.maxSize);
      const keys = refs.map((r) => r.fp.toString('latin1'));
      const inScope = await this.knownToCaller(s, keys);
      const missing: boolean[] = refs.map(() => true);
      const ask = refs.map((r, i) => (inScope[i] ? i : -1)).filter((i) => i >= 0);
      if (ask.length > 0) {
        const lacks = await this.ns.store.missingSegments(ask.map((i) => refs[i].fp));
        ask.forEach((i, j) => (missing[i] = lacks[j]));
      }
      return encodeQueryReply(missing);
    });
  }

  async segments(caller: TransferCaller, id: string, frame: Buffer, from?: string): Promise<SegmentsReply> {
    return this.withSession(caller, id, async (s) => {
      const segs = decodeSegments(frame, this.ns.store.chunker.maxSize);
      const r = await this.ns.store.acceptSegments(
        segs.map((g) => ({ fp: g.fp, len: g.len, lz4: g.codec === SegmentCodec.Lz4, payload: g.payload })),
        s.deps,
      );
      // Those before a refused one are kept, as the protocol says.
      for (let i = 0; i < r.accepted; i++) s.task.sent.add(segs[i].fp.toString('latin1'));
      s.segmentsSent += r.accepted;
      if (r.error) {
        if ((r.error as { code?: string }).code === 'SEGMENT_MISMATCH') {
          this.log(`transfer: refused a forged segment from ${s.owner}${from ? ` at ${from}` : ''} for ${s.share}/${s.path}: ${r.error.message}`);
        }
        throw r.error;
      }
      const { stored, duplicates } = r;
      return { stored, duplicates };
    });
  }

  async recipe(caller: TransferCaller, id: string, frame: Buffer): Promise<RecipeReply> {
    return this.withSession(caller, id, async (s) => {
      const { offset, entries, version } = decodeRecipe(frame, this.ns.store.chunker.maxSize);
      if (version > s.protocol) throw vmError('INVALID_ARGUMENT', `transfer frame: a version-${version} recipe in a session opened with protocol ${s.protocol}`);
      const w = s.writer;
      if (offset < w.position) throw vmError('INVALID_ARGUMENT', `recipe at offset ${offset}, but the file is described up to ${w.position} already`);
      let total = 0;
      for (const e of entries) total += e.len;
      if (offset + total > s.size) throw vmError('INVALID_ARGUMENT', `recipe at ${offset} of ${total} bytes runs past the file's ${s.size} bytes`);
      const keys = entries.filter((e) => e.kind === 'segment').map((e) => (e as { fp: Buffer }).fp.toString('latin1'));
      const known = await this.knownToCaller(s, keys);
      const k0 = known.indexOf(false);
      if (k0 >= 0) {
        // The same words as for a segment the store lacks: a recipe must not confirm either.
        throw vmError('NOT_FOUND', `the recipe names segment ${Buffer.from(keys[k0], 'latin1').toString('hex')}, which the appliance does not hold; send it first`);
      }
      try {
        if (offset > w.position) await w.old(w.position, offset);
        let run: Array<{ fp: Buffer; len: number }> = [];
        for (const e of entries) {
          if (e.kind === 'segment') {
            run.push({ fp: e.fp, len: e.len });
            continue;
          }
          if (run.length > 0) await w.segments(run);
          run = [];
          if (e.kind === 'zero') await w.zeros(e.len);
          else await w.old(w.position, w.position + e.len);
        }
        if (run.length > 0) await w.segments(run);
      } catch (err) {
        // The writer's state is unknown now: the session cannot go on.
        await this.drop(s);
        throw err;
      }
      for (const k of keys) s.named.add(k);
      s.segments += keys.length;
      return { position: w.position };
    });
  }

  async finish(caller: TransferCaller, id: string): Promise<FinishReply> {
    return this.withSession(caller, id, async (s) => {
      const w = s.writer;
      try {
        if (w.position < s.size) await w.old(w.position, s.size, true);
        const r = await w.finish();
        s.done = true;
        if (r.version.size !== s.size) throw vmError('IO', `internal: the built version holds ${r.version.size} bytes, not ${s.size}`);
        for (const d of s.deps) r.deps.add(d);
        await this.ns.installer.install(`${s.share}/${s.path}`, r.version, r.deps, s.current);
      } finally {
        await this.drop(s);
      }
      const sc = this.scopes.get(s.share);
      if (sc) {
        const scope = await sc.catch(() => undefined);
        if (scope) for (const k of s.named) scope.keys.add(k);
      }
      return { share: s.share, path: s.path, size: s.size, segments: s.segments, segmentsSent: s.segmentsSent };
    });
  }

  async abort(caller: TransferCaller, id: string): Promise<void> {
    await this.withSession(caller, id, (s) => this.drop(s));
  }

  private async drop(s: Session): Promise<void> {
    if (!this.sessions.has(s.id)) return;
    this.sessions.delete(s.id);
    try {
      if (!s.done) {
        s.done = true;
        await s.writer.abort().catch(() => {});
      }
    } finally {
      s.hold.release();
    }
  }

  private async expire(): Promise<void> {
    const now = Date.now();
    for (const s of [...this.sessions.values()]) {
      if (now - s.used > this.idleMs) {
        this.log(`transfer: session of ${s.owner} for ${s.share}/${s.path} idle for ${Math.round((now - s.used) / 1000)} s; dropped`);
        await s.lock.run(() => this.drop(s)).catch(() => {});
      }
    }
    for (const [k, t] of this.tasks) if (now - t.touched > TASK_KEEP_MS) this.tasks.delete(k);
  }
}

function ownerOf(caller: TransferCaller): string {
  return caller.kind === 'admin' ? 'admin' : `agent:${caller.name}`;
}
