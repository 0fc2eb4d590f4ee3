// Disk files of a VM on a host, written in place through that host's agent (issue 13): QEMU's
// disk files are on the host, which the appliance does not see. The agent's in-place requests
// (src/agent/in-place-requests.ts; README.md, "Host requests") take only the disk file's path, the
// one the VM's QEMU reported (query-block, else the point's vm.json); the agent derives the
// partial files' names from it and allows only its configured folders. The point's bytes travel
// in inplace-write requests, data runs only (holes stay holes in the agent's sparse file).
//
// The agent is untrusted: inplace-check's answer must be one of the known kinds with a boolean,
// anything else fails the restore (IO, bad-answer) before any file is made.

import type { Namespace } from '../namespace/namespace.js';
import type { AgentPool } from './agent-pool.js';
import { dataRanges, forEachDataChunk } from './restore.js';
import type { DiskFileKind, InPlaceFiles } from './restore-in-place.js';

const TIMEOUT_MS = 60_000;
/** qemu-img convert of a large disk on the host takes as long as it takes. */
const FINISH_TIMEOUT_MS = 10 * 60_000;
/** Bytes per inplace-write (base64 in the request: ~1.4 MiB of JSON), requests in flight. */
const CHUNK = 1024 * 1024;
const IN_FLIGHT = 4;
const KINDS: readonly DiskFileKind[] = ['file', 'block', 'link', 'other', 'missing'];

export class HostInPlaceFiles implements InPlaceFiles {
  constructor(
    private readonly pool: Pick<AgentPool, 'request'>,
    private readonly host: string,
    private readonly agent: string,
  ) {}

  get where(): string {
    return `on host ${this.host} (through agent ${this.agent})`;
  }

  get writer(): string {
    return `agent ${this.agent}`;
  }

  stat(file: string): Promise<{ kind: DiskFileKind; writable: boolean }> {
    return this.pool.request(this.agent, 'inplace-check', { path: file }, TIMEOUT_MS, (x) => {
      const v = x as { kind?: unknown; writable?: unknown } | null;
      if (v === null || typeof v !== 'object') throw new Error('not an object');
      if (typeof v.kind !== 'string' || !(KINDS as readonly string[]).includes(v.kind)) throw new Error(`kind ${JSON.stringify(String(v.kind).slice(0, 40))} is not one of ${KINDS.join(', ')}`);
      if (typeof v.writable !== 'boolean') throw new Error('writable is not a boolean');
      return { kind: v.kind as DiskFileKind, writable: v.writable };
    });
  }

  async writeBeside(
    file: string,
    format: 'raw' | 'qcow2',
    src: { ns: Namespace; path: string },
    o: { signal?: AbortSignal; advance?: (n: number) => void },
  ): Promise<void> {
    const { ns } = src;
    const size = (await ns.fs.getattr(src.path)).size;
    const fh = await ns.fs.open(src.path, 0);
    try {
      await this.pool.request(this.agent, 'inplace-open', { path: file, size }, TIMEOUT_MS, () => null);
      const ranges = await dataRanges(ns, fh, size);
      o.advance?.(size - ranges.reduce((n, r) => n + r.end - r.start, 0));
      await forEachDataChunk(ranges, CHUNK, IN_FLIGHT, o.signal, async (at, len) => {
        const buf = await ns.fs.read(fh, at, len);
        if (buf.length !== len) throw new Error(`${src.path}: read ${buf.length} bytes at ${at}, expected ${len}`);
        // A run of zeros inside a data range needs no bytes on the wire: the file is sparse there.
        if (!isZero(buf)) await this.pool.request(this.agent, 'inplace-write', { path: file, offset: at, data: buf.toString('base64') }, TIMEOUT_MS, () => null);
        o.advance?.(len);
      });
      await this.pool.request(this.agent, 'inplace-finish', { path: file, format }, FINISH_TIMEOUT_MS, () => null);
    } finally {
      await ns.fs.release(fh);
    }
  }

  async replace(file: string): Promise<void> {
    await this.pool.request(this.agent, 'inplace-commit', { path: file }, TIMEOUT_MS, () => null);
  }

  async discard(file: string): Promise<void> {
    await this.pool.request(this.agent, 'inplace-discard', { path: file }, TIMEOUT_MS, () => null);
  }
}

const ZERO = Buffer.alloc(CHUNK);

function isZero(b: Buffer): boolean {
  return b.length <= ZERO.length ? b.equals(ZERO.subarray(0, b.length)) : b.every((x) => x === 0);
}
