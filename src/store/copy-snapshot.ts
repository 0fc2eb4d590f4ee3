// A consistent view of the whole store for a copy made while it keeps serving (the DR copy,
// src/policy/DR-FORMAT.md): taken under the commit lock, so no checkpoint is half done, it holds
//  - an explicit LevelDB snapshot (every record as of that moment: index, registry, checkpoint,
//    counters, and the namespace's records, which share the database), and
//  - the containers that snapshot can reference: every registered (sealed) one whole, and every
//    container the checkpoint names as open up to the length its writer had made durable. Records
//    appended later lie beyond that length; the restored store's recovery seals the copy.
// Sealed containers never change, and open ones only grow, but GC removes containers it emptied
// while the copy may still be reading them: each is pinned by a hard link in `<data>/dr-pin/`
// (same file system, one link per container, made under the lock) until release().
//
// Contract: records() yields every record of the snapshot in key order and may be called more
// than once; a container's bytes are read from pathOf(id), from offset 0 up to its `size`; the
// snapshot pins disk space until release(), which a caller must call (also on failure).

import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { type Db, settled } from '../kv/db.js';
import { decodeCheckpoint } from './meta-records.js';
import { containerRelPath } from './container/format.js';
import { CONTAINER_PREFIX, metaKey } from './keys.js';
import type { StoreCore } from './store-core.js';

export interface SnapshotContainer {
  id: number;
  /** Path relative to the store directory, `containers/<shard>/<id>.vvc` (FORMAT.md). */
  rel: string;
  /** Bytes of the file that belong to the snapshot. */
  size: number;
  /** Registered (sealed): its bytes never change. Otherwise open at the checkpoint. */
  sealed: boolean;
}

export interface StoreSnapshot {
  /** The store's `store.json`, byte for byte. */
  readonly config: Buffer;
  /** The store's identity (store.json `id`). */
  readonly storeId: string;
  /** When the snapshot was taken (ms since the epoch). */
  readonly takenAt: number;
  /** The checkpoint the snapshot holds: the next container id, the containers open at it. */
  readonly checkpoint: { nextCid: number; openCids: number[] };
  readonly containers: SnapshotContainer[];
  /** Every LevelDB record of the snapshot, in key order, in batches. */
  records(): AsyncIterable<Array<[Buffer, Buffer]>>;
  /** Where to read a container's bytes (its pin). */
  pathOf(id: number): string;
  release(): Promise<void>;
}

const PIN_DIR = 'dr-pin';
/** Pins of snapshots this process holds; any other pin directory is a crashed copy's. */
const livePins = new Set<string>();

export async function takeSnapshot(core: StoreCore, dir: string, configBytes: Buffer, storeId: string): Promise<StoreSnapshot> {
  const pinRoot = path.join(dir, PIN_DIR);
  await removeStalePins(pinRoot);
  const token = randomBytes(6).toString('hex');
  const pinDir = path.join(pinRoot, token);
  livePins.add(token);
  const db = core.db;
  let snap: ReturnType<Db['snapshot']> | undefined;
  try {
    const taken = await core.underCommitLock(async () => {
      // Metadata changes already answered (kv/db.ts write-behind) belong in the copy.
      await settled(db);
      const s = (snap = db.snapshot());
      const takenAt = Date.now();
      const raw = await db.get(metaKey('checkpoint'), { snapshot: s });
      const checkpoint = raw ? decodeCheckpoint(raw) : { nextCid: 1, openCids: [] };
      const sealed: number[] = [];
      for await (const key of db.keys({ snapshot: s, gte: Buffer.from([CONTAINER_PREFIX]), lt: Buffer.from([CONTAINER_PREFIX + 1]) })) {
        if (key.length === 5) sealed.push(key.readUInt32BE(1));
      }
      const containers: SnapshotContainer[] = [];
      const madeShards = new Set<string>();
      const pin = async (id: number): Promise<number | undefined> => {
        const rel = containerRelPath(id);
        const to = path.join(pinDir, rel);
        const shard = path.dirname(to);
        if (!madeShards.has(shard)) {
          await fsp.mkdir(shard, { recursive: true });
          madeShards.add(shard);
        }
        try {
          await fsp.link(path.join(core.files.dir, rel), to);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
          throw err;
        }
        return (await fsp.stat(to)).size;
      };
      for (const id of sealed) {
        const size = await pin(id);
        // A registered container without its file is damage the copy must not hide.
        if (size === undefined) throw vmError('CORRUPT_CONTAINER', `container ${containerRelPath(id)} is registered but its file is missing; run verify before copying`);
        containers.push({ id, rel: relOf(id), size, sealed: true });
      }
      const sealedSet = new Set(sealed);
      for (const id of checkpoint.openCids) {
        if (sealedSet.has(id)) continue;
        const size = await pin(id);
        if (size === undefined) continue; // created, never written: nothing references it
        const w = core.writers.get(id);
        containers.push({ id, rel: relOf(id), size: w ? Math.min(w.durable, size) : size, sealed: false });
      }
      containers.sort((a, b) => a.id - b.id);
      return { takenAt, checkpoint, containers };
    });
    const s = snap!;
    let released = false;
    return {
      config: configBytes,
      storeId,
      takenAt: taken.takenAt,
      checkpoint: taken.checkpoint,
      containers: taken.containers,
      async *records() {
        const it = db.iterator({ snapshot: s });
        try {
          for (;;) {
            const batch = (await it.nextv(1000)) as Array<[Buffer, Buffer]>;
            if (batch.length === 0) return;
            yield batch;
          }
        } finally {
          await it.close();
        }
      },
      pathOf: (id) => path.join(pinDir, containerRelPath(id)),
      async release() {
        if (released) return;
        released = true;
        await s.close().catch(() => {});
        await fsp.rm(pinDir, { recursive: true, force: true });
        livePins.delete(token);
      },
    };
  } catch (err) {
    await snap?.close().catch(() => {});
    await fsp.rm(pinDir, { recursive: true, force: true }).catch(() => {});
    livePins.delete(token);
    throw fromSystemError(err, 'taking a consistent snapshot of the store');
  }
}

function relOf(id: number): string {
  return path.posix.join('containers', containerRelPath(id).split(path.sep).join('/'));
}

/** Pin directories of copies that crashed (or whose process did): their links only hold space. */
async function removeStalePins(pinRoot: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(pinRoot);
  } catch {
    return;
  }
  for (const n of names) if (!livePins.has(n)) await fsp.rm(path.join(pinRoot, n), { recursive: true, force: true });
}
