// Helpers for backup tests: a progress sink that records what the service reports, a VM lookup
// (the real registry is the surfaces helper's; the service needs only get()), and a model of a
// disk that follows the qemu-io writes a test makes, so each point can be compared with what the
// disk held at that moment.

import { createHash } from 'node:crypto';
import type { BackupProgress, VmConfigLike } from '../../src/backup/backup-service.js';
import { vmError } from '../../src/errors.js';

export interface RecordedProgress extends BackupProgress {
  phases: string[];
  totalBytes: number;
  advanced: number;
  lines: string[];
  controller: AbortController;
}

export function progress(onAdvance?: (p: RecordedProgress) => void): RecordedProgress {
  const controller = new AbortController();
  const p: RecordedProgress = {
    phases: [],
    totalBytes: 0,
    advanced: 0,
    lines: [],
    controller,
    signal: controller.signal,
    phase: (n) => p.phases.push(n),
    total: (n) => (p.totalBytes += n),
    advance: (n) => {
      p.advanced += n;
      onAdvance?.(p);
    },
    log: (l) => p.lines.push(l),
  };
  return p;
}

export function vmLookup(vms: VmConfigLike[]): { get(name: string): VmConfigLike } {
  return {
    get(name) {
      const v = vms.find((x) => x.name === name);
      if (!v) throw vmError('NOT_FOUND', `no VM named ${name}`);
      return v;
    },
  };
}

/** The bytes a disk holds, following `write -P PATTERN OFFSET LENGTH` commands. */
export class DiskModel {
  readonly bytes: Buffer;
  constructor(size: number) {
    this.bytes = Buffer.alloc(size);
  }
  write(pattern: number, offset: number, length: number): string {
    this.bytes.fill(pattern, offset, offset + length);
    return `write -P ${pattern} ${offset} ${length}`;
  }
  sha(): string {
    return sha(this.bytes);
  }
}

export function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
