// Placement of records in containers: the one open container that appends go to, sealing it
// when full, and the containers still being written or sealed until a checkpoint registers
// them (FORMAT.md, "Write ordering", rules 1-3 and 6).

import fsp from 'node:fs/promises';
import { fsyncDir } from './file-io.js';
import type { ContainerFiles } from './files.js';
import type { Codec, RecordMeta, SegmentKind } from './format.js';
import { ContainerWriter } from './writer.js';

/** A record appended but not yet in the index. */
export interface Pending {
  cid: number;
  meta: RecordMeta;
  writer: ContainerWriter;
}

export class Placement {
  /** The container appends go to. */
  current: ContainerWriter | undefined;
  /** Unsealed or sealing containers by id. */
  readonly writers = new Map<number, ContainerWriter>();
  readonly seals = new Map<number, Promise<void>>();
  /** Directories created for container files since the last checkpoint. */
  readonly newDirs = new Set<string>();
  /** Containers whose writes failed: a tree that used their records must not be committed. */
  readonly failedCids = new Set<number>();

  constructor(
    private readonly files: ContainerFiles,
    public nextCid: number,
  ) {}

  private open(): ContainerWriter {
    const id = this.nextCid++;
    const file = this.files.pathOf(id);
    const ready = this.files.prepare(id).then((dirs) => {
      for (const d of dirs) this.newDirs.add(d);
    });
    const w = new ContainerWriter(id, file, ready);
    this.writers.set(id, w);
    return w;
  }

  private seal(w: ContainerWriter): void {
    const p = w.seal().then(
      () => w.release(),
      (err) => {
        this.failedCids.add(w.id);
        throw err;
      },
    );
    p.catch(() => {});
    this.seals.set(w.id, p);
  }

  /** Appends to the open container, sealing a full (or dropping a failed) one first. */
  append(kind: SegmentKind, fp: Buffer, rawLen: number, codec: Codec, payload: Uint8Array): Pending {
    let w = this.current;
    if (w && (w.failed || w.full(payload.length))) {
      if (!w.failed) this.seal(w);
      else this.failedCids.add(w.id);
      w = undefined;
    }
    if (!w) w = this.current = this.open();
    const meta = w.append(kind, fp, rawLen, codec, payload);
    return { cid: w.id, meta, writer: w };
  }

  /** Resolves once every record so far in these containers is durable (its seal, or a sync). */
  async makeDurable(writers: Iterable<ContainerWriter>): Promise<void> {
    await Promise.all([...writers].map((w) => this.seals.get(w.id) ?? w.sync()));
  }

  /** fsyncs the directories created since the last call: children first (a shard's entry in
   * containers/ after the files' entries in the shard). */
  async syncNewDirs(): Promise<void> {
    if (this.newDirs.size === 0) return;
    const dirs = [...this.newDirs];
    this.newDirs.clear();
    for (const d of dirs.sort((a, b) => b.length - a.length)) await fsyncDir(d);
  }

  /** Sealed containers, durable, none of whose records waits in `unindexed`: ready to register. */
  registrable(unindexed: Pending[]): ContainerWriter[] {
    const out: ContainerWriter[] = [];
    for (const [id, w] of this.writers) {
      if (w.sealed && w.durable === w.size && this.seals.has(id) && !unindexed.some((p) => p.cid === id)) out.push(w);
    }
    return out;
  }

  /** A registered container needs no writer any more. */
  retire(w: ContainerWriter): void {
    this.writers.delete(w.id);
    this.seals.delete(w.id);
    w.release();
  }

  /** Drops the open container if its write failed. */
  abandonFailed(): void {
    if (this.current?.failed) {
      void this.current.abandon();
      this.current = undefined;
    }
  }

  /** The id of the container the next append lands in: the open one, or the one it will open. */
  nextAppendCid(): number {
    const w = this.current;
    return w && !w.failed ? w.id : this.nextCid;
  }

  openIds(): number[] {
    return [...this.writers.keys()];
  }

  /**
   * Seals the open container and waits for every seal under way (at close, before a rebuild),
   * so the next checkpoint registers them all: afterwards no healthy container is open. A
   * container that failed keeps its file and stays listed as open: records committed before
   * the failure are in it, and recovery repairs it.
   */
  async sealOpen(): Promise<void> {
    const w = this.current;
    this.current = undefined;
    if (w && !w.failed && w.records.length > 0) this.seal(w);
    else if (w && w.records.length === 0) {
      await w.abandon();
      this.writers.delete(w.id);
      await fsp.rm(w.path, { force: true });
    } else if (w) {
      await w.abandon();
    }
    await Promise.all([...this.seals.values()].map((p) => p.catch(() => {})));
  }
}
