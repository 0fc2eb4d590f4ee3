// The pool of codec workers. Batches go to the worker with the fewest in flight; workers are
// referenced only while they have work, so an idle store never keeps a process alive.

import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { vmError } from '../../errors.js';
import type { DecodeRequest, DecodeResult, HashRequest, HashResult, WorkerReply } from './messages.js';

type Pending = { resolve: (r: WorkerReply) => void; reject: (e: Error) => void };

interface Slot {
  worker: Worker;
  inflight: number;
  pending: Map<number, Pending>;
}

export class CodecPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  constructor(size = Math.max(1, Math.min(os.availableParallelism(), 4))) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  get size(): number {
    return this.slots.length;
  }

  private spawn(): Slot {
    const worker = new Worker(new URL('./worker.js', import.meta.url));
    const slot: Slot = { worker, inflight: 0, pending: new Map() };
    worker.unref();
    worker.on('message', (msg: WorkerReply) => {
      const p = slot.pending.get(msg.id);
      if (!p) return;
      slot.pending.delete(msg.id);
      if (--slot.inflight === 0) worker.unref();
      if (msg.type === 'error') p.reject(new Error(`codec worker: ${msg.message}`));
      else p.resolve(msg);
    });
    worker.on('error', (err) => this.fail(slot, err));
    worker.on('exit', (code) => {
      if (!this.closed) this.fail(slot, new Error(`codec worker exited with code ${code}`));
    });
    return slot;
  }

  private fail(slot: Slot, err: Error): void {
    for (const p of slot.pending.values()) p.reject(err);
    slot.pending.clear();
    slot.inflight = 0;
    if (!this.closed) {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots[i] = this.spawn();
    }
  }

  private send<R extends WorkerReply>(req: HashRequest | DecodeRequest): Promise<R> {
    if (this.closed) return Promise.reject(vmError('CLOSED', 'the store is closed'));
    let slot = this.slots[0];
    for (const s of this.slots) if (s.inflight < slot.inflight) slot = s;
    return new Promise<R>((resolve, reject) => {
      slot.pending.set(req.id, { resolve: resolve as (r: WorkerReply) => void, reject });
      if (slot.inflight++ === 0) slot.worker.ref();
      slot.worker.postMessage(req);
    });
  }

  hash(req: Omit<HashRequest, 'id' | 'type'>): Promise<HashResult> {
    return this.send<HashResult>({ ...req, id: this.nextId++, type: 'hash' });
  }

  decode(req: Omit<DecodeRequest, 'id' | 'type'>): Promise<DecodeResult> {
    return this.send<DecodeResult>({ ...req, id: this.nextId++, type: 'decode' });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    for (const s of this.slots) for (const p of s.pending.values()) p.reject(vmError('CLOSED', 'the store is closed'));
  }
}
