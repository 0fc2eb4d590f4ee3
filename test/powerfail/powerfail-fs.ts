// A passthrough file system that loses power like a disk with a volatile cache: everything
// written since a file's last fsync, and every name change since its directory's last fsync,
// can be taken back by cut(). The model, and what it deliberately leaves out, is in README.md
// beside this file. Served over FUSE by powerfail-main.ts in a process of its own.
//
// How: every operation is applied to the backing directory at once (so reads see the current
// state, as on a real disk with its cache), and an undo record is kept of what is not yet
// durable: for data, per inode, the size at the last fsync and the old bytes of every range
// overwritten inside it; for names, a log of operations with the directories they touched.
// cut() plays the undo back, hostile where the rules allow: the unsynced tail of a file is torn
// at a random byte, every unsynced overwrite is lost, unsynced creates, renames, unlinks and
// mkdirs are undone (newest first), unlinked files come back from a graveyard.

import type { FileHandle as NodeFileHandle } from 'node:fs/promises';
import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import type { DirEntry, FileHandle, FileStat, FsStats, PathHandlers } from '../helpers/path-mount.js';
import { Rng } from '../helpers/data.js';

/** What a cut dropped: reported to the test so it can tell the cut did something. */
export interface CutReport {
  /** Files whose unsynced appended bytes were cut at a random byte (some, not all, kept). */
  tornFiles: number;
  /** Files cut back to their synced size exactly (nothing of the unsynced tail kept). */
  truncatedFiles: number;
  /** Unsynced bytes past the synced size that were dropped. */
  droppedBytes: number;
  /** Ranges inside the synced size whose unsynced overwrite was rolled back. */
  lostOverwrites: number;
  /** Name operations (create, mkdir, rename, unlink, rmdir, link, symlink) undone. */
  undoneOps: number;
  /** The undone operations, newest first, for a failure message ("rename /a -> /b"). */
  undone: string[];
}

interface DataState {
  /** An fd of our own: the file may be renamed, unlinked or its handles closed before a cut. */
  fd: NodeFileHandle;
  /** Size at the last fsync (or when first touched): what survives a cut at least. */
  durableSize: number;
  /** Old bytes of ranges below durableSize written since, oldest first. */
  undo: Array<{ off: number; data: Buffer }>;
}

interface NameOp {
  seq: number;
  what: string;
  /** Inodes of the directories the operation changed: durable once each was fsynced after it. */
  dirs: number[];
  undo: () => Promise<void>;
  /** Once durable: what to let go (a graveyard entry). */
  settle?: () => Promise<void>;
}

interface Open {
  fd: NodeFileHandle;
  ino: number;
}

/** One at a time: the undo bookkeeping assumes operations do not interleave. */
class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => undefined);
    return p;
  }
}

/** POWERFAIL_TRACE=1: every state change on stderr, to see what a cut will undo and why. */
const TRACE = process.env.POWERFAIL_TRACE === '1';
const trace = (line: string) => TRACE && process.stderr.write(`powerfail: ${line}\n`);

const eio = (why: string) => Object.assign(new Error(why), { code: 'EIO' });

/** The time every directory reports with frozenDirTimes (2001-09-09). */
const FROZEN_MS = 1_000_000_000_000;

export class PowerfailFs implements PathHandlers {
  private readonly root: string;
  private readonly grave: string;
  private readonly rng: Rng;
  private readonly serial = new Serial();
  private readonly data = new Map<number, DataState>();
  private readonly names: NameOp[] = [];
  private readonly dirSynced = new Map<number, number>();
  private readonly handles = new Map<number, Open>();
  private seq = 0;
  private nextFh = 1;
  private graveN = 0;
  private powered = true;

  /**
   * `base/root` is served; `base/grave` holds unlinked and replaced files until their unlink is
   * durable (same file system as root, so they move back by rename).
   */
  /**
   * `frozenDirTimes`: directories report one fixed atime/mtime/ctime, the extreme of a coarse
   * timestamp clock (ext4's tick, a FUSE server's milliseconds): whoever decides "did this
   * directory change?" by its times alone is caught out.
   */
  constructor(base: string, seed: number, private readonly opts: { frozenDirTimes?: boolean } = {}) {
    this.root = path.join(base, 'root');
    this.grave = path.join(base, 'grave');
    this.rng = new Rng(seed);
  }

  async init(): Promise<void> {
    await fs.mkdir(this.root, { recursive: true });
    await fs.rm(this.grave, { recursive: true, force: true });
    await fs.mkdir(this.grave, { recursive: true });
  }

  private bp(p: string): string {
    return path.join(this.root, p);
  }

  /** Serialized, and refused while the power is off (a dead disk answers nothing). */
  private op<T>(fn: () => Promise<T>): Promise<T> {
    return this.serial.run(async () => {
      if (!this.powered) throw eio('power is off');
      return fn();
    });
  }

  private handle(fh: number): Open {
    const h = this.handles.get(fh);
    // A handle opened before a cut: its process died with the power.
    if (!h) throw eio(`file handle ${fh} is not open (opened before a power cut?)`);
    return h;
  }

  private async inoOf(bp: string): Promise<number> {
    return (await fs.lstat(bp)).ino;
  }

  private parentIno(p: string): Promise<number> {
    return this.inoOf(path.dirname(this.bp(p)));
  }

  /** The data state of an inode, made on its first unsynced change from the current size. */
  private async dataState(ino: number, bp: string): Promise<DataState> {
    let st = this.data.get(ino);
    if (!st) {
      const fd = await fs.open(bp, constants.O_RDWR);
      st = { fd, durableSize: (await fd.stat()).size, undo: [] };
      this.data.set(ino, st);
      trace(`track ${bp} ino ${ino} durable size ${st.durableSize}`);
    }
    return st;
  }

  /** Keeps the bytes in [from, to) ∩ [0, durableSize) as they are now, to put back at a cut. */
  private async keepOld(st: DataState, from: number, to: number): Promise<void> {
    const end = Math.min(to, st.durableSize);
    if (from >= end) return;
    const buf = Buffer.alloc(end - from);
    const { bytesRead } = await st.fd.read(buf, 0, buf.length, from);
    if (bytesRead > 0) st.undo.push({ off: from, data: buf.subarray(0, bytesRead) });
  }

  private logName(what: string, dirs: number[], undo: () => Promise<void>, settle?: () => Promise<void>): void {
    this.names.push({ seq: ++this.seq, what, dirs, undo, settle });
    trace(`${what} (dirs ${dirs.join(',')})`);
  }

  private async toGrave(bp: string): Promise<string> {
    const g = path.join(this.grave, String(++this.graveN));
    await fs.rename(bp, g);
    return g;
  }

  // ---- power ---------------------------------------------------------------------------

  /**
   * The power fails: every unsynced change is dropped (see the class comment) and the file
   * system answers EIO to everything until powerOn(). Handles open now stay dead.
   */
  cut(): Promise<CutReport> {
    return this.serial.run(async () => {
      const r: CutReport = { tornFiles: 0, truncatedFiles: 0, droppedBytes: 0, lostOverwrites: 0, undoneOps: 0, undone: [] };
      this.powered = false;
      for (const st of this.data.values()) {
        const size = (await st.fd.stat()).size;
        if (size > st.durableSize) {
          const unsynced = size - st.durableSize;
          const keep = this.rng.int(unsynced + 1);
          if (keep < unsynced) {
            if (keep > 0) r.tornFiles++;
            else r.truncatedFiles++;
          }
          r.droppedBytes += unsynced - keep;
          await st.fd.truncate(st.durableSize + keep);
        } else if (size < st.durableSize) {
          await st.fd.truncate(st.durableSize);
        }
        for (let i = st.undo.length - 1; i >= 0; i--) {
          const u = st.undo[i];
          await st.fd.write(u.data, 0, u.data.length, u.off);
        }
        r.lostOverwrites += st.undo.length;
        await st.fd.close();
      }
      this.data.clear();
      for (let i = this.names.length - 1; i >= 0; i--) {
        const n = this.names[i];
        try {
          await n.undo();
        } catch (err) {
          // Cannot happen if the log is consistent; keep going so the rest is still undone.
          process.stderr.write(`powerfail: undo of ${n.what} failed: ${(err as Error).message}\n`);
        }
        r.undone.push(n.what);
      }
      r.undoneOps = this.names.length;
      this.names.length = 0;
      this.dirSynced.clear();
      await fs.rm(this.grave, { recursive: true, force: true });
      await fs.mkdir(this.grave);
      for (const h of this.handles.values()) await h.fd.close().catch(() => undefined);
      this.handles.clear();
      return r;
    });
  }

  powerOn(): Promise<void> {
    return this.serial.run(async () => {
      this.powered = true;
    });
  }

  /** Unsynced state held now (for tests of the model itself). */
  pending(): { files: number; nameOps: number } {
    return { files: this.data.size, nameOps: this.names.length };
  }

  // ---- attributes and lookups ------------------------------------------------------------

  private static stat(s: import('node:fs').Stats, frozen = false): FileStat {
    if (frozen && s.isDirectory()) return { mode: s.mode, size: s.size, uid: s.uid, gid: s.gid, nlink: s.nlink, ino: s.ino, blocks: s.blocks, atime: FROZEN_MS, mtime: FROZEN_MS, ctime: FROZEN_MS };
    return { mode: s.mode, size: s.size, uid: s.uid, gid: s.gid, nlink: s.nlink, ino: s.ino, blocks: s.blocks, atime: s.atimeMs, mtime: s.mtimeMs, ctime: s.ctimeMs };
  }

  getattr(p: string): Promise<FileStat> {
    return this.op(async () => PowerfailFs.stat(await fs.lstat(this.bp(p)), this.opts.frozenDirTimes));
  }

  fgetattr(_p: string, fh: FileHandle): Promise<FileStat> {
    return this.op(async () => PowerfailFs.stat(await this.handle(fh).fd.stat(), this.opts.frozenDirTimes));
  }

  readdir(p: string): Promise<Array<string | DirEntry>> {
    return this.op(() => fs.readdir(this.bp(p)));
  }

  statfs(): Promise<FsStats> {
    return this.op(async () => {
      const s = await fs.statfs(this.root);
      return { totalBytes: s.blocks * s.bsize, freeBytes: s.bfree * s.bsize, availableBytes: s.bavail * s.bsize, totalInodes: s.files, freeInodes: s.ffree };
    });
  }

  readlink(p: string): Promise<string> {
    return this.op(() => fs.readlink(this.bp(p)));
  }

  // ---- data ------------------------------------------------------------------------------

  open(p: string, flags: number): Promise<FileHandle> {
    return this.op(async () => {
      // Creation and truncation reach us as create and truncate; appends come with their offset.
      const fd = await fs.open(this.bp(p), flags & 3 /* O_ACCMODE */);
      const fh = this.nextFh++;
      this.handles.set(fh, { fd, ino: (await fd.stat()).ino });
      return fh;
    });
  }

  create(p: string, mode: number): Promise<FileHandle> {
    return this.op(async () => {
      const bp = this.bp(p);
      const dir = await this.parentIno(p);
      const fd = await fs.open(bp, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, mode & 0o7777);
      this.logName(`create ${p}`, [dir], () => fs.rm(bp, { force: true }));
      const fh = this.nextFh++;
      this.handles.set(fh, { fd, ino: (await fd.stat()).ino });
      return fh;
    });
  }

  read(_p: string, fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> {
    return this.op(async () => (await this.handle(fh).fd.read(buf, 0, len, pos)).bytesRead);
  }

  write(_p: string, fh: FileHandle, buf: Buffer, len: number, pos: number): Promise<number> {
    return this.op(async () => {
      const h = this.handle(fh);
      // By the handle, not the name: the file may have been unlinked while open.
      const st = await this.dataState(h.ino, this.fdPath(h));
      await this.keepOld(st, pos, pos + len);
      let done = 0;
      while (done < len) done += (await h.fd.write(buf, done, len - done, pos + done)).bytesWritten;
      return len;
    });
  }

  /** File fsync: its data and size are durable. Not its name: that takes its directory's fsync. */
  fsync(_p: string, fh: FileHandle): Promise<void> {
    return this.op(async () => {
      const h = this.handle(fh);
      const st = this.data.get(h.ino);
      trace(`fsync ${_p} ino ${h.ino}${st ? '' : ' (clean)'}`);
      if (!st) return;
      st.durableSize = (await st.fd.stat()).size;
      st.undo = [];
    });
  }

  /** Directory fsync: every name operation that touched it becomes durable in it. */
  fsyncdir(p: string): Promise<void> {
    return this.op(async () => {
      this.dirSynced.set(await this.inoOf(this.bp(p)), ++this.seq);
      trace(`fsyncdir ${p}`);
      const keep: NameOp[] = [];
      for (const n of this.names) {
        if (n.dirs.every((d) => (this.dirSynced.get(d) ?? 0) > n.seq)) await n.settle?.();
        else keep.push(n);
      }
      this.names.splice(0, this.names.length, ...keep);
    });
  }

  flush(): Promise<void> {
    return this.op(async () => undefined);
  }

  release(_p: string, fh: FileHandle): Promise<void> {
    // Also after a cut (the handle is gone already) and while off: nothing to answer for.
    return this.serial.run(async () => {
      const h = this.handles.get(fh);
      this.handles.delete(fh);
      await h?.fd.close();
    });
  }

  /** A path that opens the handle's file, also once it is unlinked (the mount removes at once). */
  private fdPath(h: Open): string {
    return `/proc/self/fd/${h.fd.fd}`;
  }

  private async truncateAt(bp: string, size: number): Promise<void> {
    // stat, not lstat: bp may be a handle's /proc/self/fd link.
    const st = await this.dataState((await fs.stat(bp)).ino, bp);
    await this.keepOld(st, size, st.durableSize);
    await st.fd.truncate(size);
  }

  truncate(p: string, size: number): Promise<void> {
    return this.op(() => this.truncateAt(this.bp(p), size));
  }

  ftruncate(_p: string, fh: FileHandle, size: number): Promise<void> {
    return this.op(() => this.truncateAt(this.fdPath(this.handle(fh)), size));
  }

  // ---- names -----------------------------------------------------------------------------

  mkdir(p: string, mode: number): Promise<void> {
    return this.op(async () => {
      const bp = this.bp(p);
      const dir = await this.parentIno(p);
      await fs.mkdir(bp, mode & 0o7777);
      // Whatever was made inside goes with it: unreachable once the mkdir is lost.
      this.logName(`mkdir ${p}`, [dir], () => fs.rm(bp, { recursive: true, force: true }));
    });
  }

  rmdir(p: string): Promise<void> {
    return this.op(async () => {
      const bp = this.bp(p);
      const dir = await this.parentIno(p);
      const mode = (await fs.lstat(bp)).mode & 0o7777;
      await fs.rmdir(bp);
      this.logName(`rmdir ${p}`, [dir], () => fs.mkdir(bp, mode));
    });
  }

  symlink(target: string, p: string): Promise<void> {
    return this.op(async () => {
      const bp = this.bp(p);
      const dir = await this.parentIno(p);
      await fs.symlink(target, bp);
      this.logName(`symlink ${p}`, [dir], () => fs.rm(bp, { force: true }));
    });
  }

  link(existing: string, p: string): Promise<void> {
    return this.op(async () => {
      const bp = this.bp(p);
      const dir = await this.parentIno(p);
      await fs.link(this.bp(existing), bp);
      this.logName(`link ${existing} -> ${p}`, [dir], () => fs.rm(bp, { force: true }));
    });
  }

  unlink(p: string): Promise<void> {
    return this.op(async () => {
      const bp = this.bp(p);
      const dir = await this.parentIno(p);
      const g = await this.toGrave(bp);
      this.logName(`unlink ${p}`, [dir], () => fs.rename(g, bp), () => fs.rm(g, { force: true }));
    });
  }

  rename(from: string, to: string): Promise<void> {
    return this.op(async () => {
      const bf = this.bp(from);
      const bt = this.bp(to);
      if (bf === bt) return;
      const dirs = [...new Set([await this.parentIno(from), await this.parentIno(to)])];
      // A replaced target waits in the graveyard, so undoing the rename can put it back.
      let displaced: string | undefined;
      const target = await fs.lstat(bt).catch(() => undefined);
      if (target && !target.isDirectory()) displaced = await this.toGrave(bt);
      else if (target) await fs.rmdir(bt); // renaming over a directory needs it empty
      try {
        await fs.rename(bf, bt);
      } catch (err) {
        if (displaced) await fs.rename(displaced, bt);
        throw err;
      }
      const targetMode = target?.isDirectory() ? target.mode & 0o7777 : undefined;
      this.logName(
        `rename ${from} -> ${to}`,
        dirs,
        async () => {
          await fs.rename(bt, bf);
          if (displaced) await fs.rename(displaced, bt);
          else if (targetMode !== undefined) await fs.mkdir(bt, targetMode);
        },
        displaced ? () => fs.rm(displaced!, { force: true }) : undefined,
      );
    });
  }

  // ---- attributes: passed through, never undone (see README.md) -----------------------------

  chmod(p: string, mode: number): Promise<void> {
    return this.op(() => fs.chmod(this.bp(p), mode & 0o7777));
  }

  chown(p: string, uid: number, gid: number): Promise<void> {
    return this.op(() => fs.lchown(this.bp(p), uid, gid));
  }

  utimens(p: string, atime: number | null, mtime: number | null): Promise<void> {
    return this.op(async () => {
      const bp = this.bp(p);
      const s = await fs.lstat(bp);
      await fs.lutimes(bp, (atime ?? s.atimeMs) / 1000, (mtime ?? s.mtimeMs) / 1000);
    });
  }
}
