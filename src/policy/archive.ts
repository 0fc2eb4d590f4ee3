// The directory archive (issue 14): a clone copy of restore points written to a directory (a
// removable disk, a tape-staging area) as a self-describing, verifiable archive. The format is
// ARCHIVE.md, beside this writer. In short: containers of LZ4 segments named by their BLAKE3
// fingerprints, a recipe per file (segments and zero runs in order), a manifest per point with
// SHA-256 checksums of its recipes and containers, and the archive's top file listing points
// with their manifests' checksums, rewritten atomically last: a point is in the archive once
// that file names it. Later points of a VM reference segments archived before (incremental).
//
// Everything here reads the source through the namespace (never the mount) and writes only
// into the destination directory. One writer per directory at a time (in this process).

import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { fsyncPath, mkdirDurable } from '../files/durable.js';
import type { Namespace } from '../namespace/namespace.js';
import { snapshotFiles } from '../namespace/snapshot-files.js';
import { encodePayload, uncompressPayload } from '../store/codec/codec.js';
import { fingerprint } from '../store/codec/fingerprint.js';
import { Codec } from '../store/container/format.js';
import { writeAtomic } from './json-file.js';
import type { SegmentSource } from './segment-source.js';
import type { PointFile, PointSource } from '../backup/restore.js';

export const ARCHIVE_FILE = 'vmvault-archive.json';
export const ARCHIVE_VERSION = 1;
const CONTAINER_MAGIC = Buffer.from('VVAC', 'latin1');
const RECIPE_MAGIC = Buffer.from('VVAR', 'latin1');
const CONTAINER_HEADER = 16;
const RECORD_HEADER = 32 + 4 + 1 + 4;
const RECIPE_HEADER = 16;
/** A container is sealed past this many bytes. */
const CONTAINER_BYTES = 64 * 1024 * 1024;
/** Missing segments read from the store at a time. */
const READ_BATCH = 256;
const MAX_SEGMENT = 16 * 1024 * 1024;

export interface ArchiveTop {
  format: 'vmvault-archive';
  version: number;
  createdAt: string;
  points: Array<{ vm: string; share: string; point: string; manifest: string; sha256: string; archivedAt: string }>;
}

export interface PointManifest {
  format: 'vmvault-archive-point';
  version: number;
  vm: string;
  share: string;
  point: string;
  createdAt: string;
  archivedAt: string;
  lockedUntil?: string;
  files: Array<{ path: string; size: number; mode: number; recipe: string; recipeSha256: string; segments: number }>;
  containers: Array<{ name: string; bytes: number; sha256: string }>;
}

export interface ArchiveProblem {
  kind: 'corrupt-segment' | 'corrupt-container' | 'corrupt-recipe' | 'corrupt-manifest' | 'missing-segment' | 'missing-file';
  message: string;
  container?: string;
  offset?: number;
  fingerprint?: string;
  file?: string;
  point?: string;
}

export interface ArchiveVerifyReport {
  dir: string;
  points: number;
  containers: number;
  segments: number;
  problems: ArchiveProblem[];
}

export interface ArchiveReport {
  dir: string;
  share: string;
  point: string;
  files: number;
  logicalBytes: number;
  segments: number;
  segmentsWritten: number;
  bytesWritten: number;
  skipped: boolean;
  verifiedAt: string;
}

interface Located {
  container: string;
  offset: number;
  len: number;
  codec: number;
  payloadLen: number;
}

const writers = new Map<string, Promise<unknown>>();

/** One writer per directory in this process: later calls wait for earlier ones. */
function exclusive<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const prev = writers.get(dir) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  writers.set(dir, next.catch(() => {}));
  return next;
}

async function readTop(dir: string): Promise<ArchiveTop | undefined> {
  const file = path.join(dir, ARCHIVE_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, `reading ${file}`);
  }
  let v: ArchiveTop;
  try {
    v = JSON.parse(text) as ArchiveTop;
  } catch (err) {
    throw vmError('CORRUPT_RECORD', `${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (v?.format !== 'vmvault-archive' || typeof v.version !== 'number' || !Array.isArray(v.points)) throw vmError('CORRUPT_RECORD', `${file} is not a vmvault archive`);
  if (v.version > ARCHIVE_VERSION) throw vmError('UNSUPPORTED_FORMAT', `${file} has archive version ${v.version}; this appliance reads up to ${ARCHIVE_VERSION}`);
  return v;
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Parses a container's records; calls `bad` for what does not parse, stops there. */
function parseContainer(name: string, buf: Buffer, each: (fp: Buffer, l: Located, payload: Buffer) => void, bad: (p: ArchiveProblem) => void): void {
  if (buf.length < CONTAINER_HEADER || !buf.subarray(0, 4).equals(CONTAINER_MAGIC)) {
    bad({ kind: 'corrupt-container', container: name, offset: 0, message: `container ${name}: not an archive container (bad magic at offset 0)` });
    return;
  }
  if (buf[4] !== 1) {
    bad({ kind: 'corrupt-container', container: name, offset: 4, message: `container ${name}: version ${buf[4]} at offset 4 (this appliance reads 1)` });
    return;
  }
  let at = CONTAINER_HEADER;
  while (at < buf.length) {
    if (at + RECORD_HEADER > buf.length) {
      bad({ kind: 'corrupt-container', container: name, offset: at, message: `container ${name}: a record header at offset ${at} is cut short` });
      return;
    }
    const fp = buf.subarray(at, at + 32);
    const len = buf.readUInt32LE(at + 32);
    const codec = buf[at + 36];
    const payloadLen = buf.readUInt32LE(at + 37);
    if (len === 0 || len > MAX_SEGMENT || (codec !== Codec.Raw && codec !== Codec.Lz4) || payloadLen > MAX_SEGMENT + 64 || at + RECORD_HEADER + payloadLen > buf.length || (codec === Codec.Raw && payloadLen !== len)) {
      bad({ kind: 'corrupt-container', container: name, offset: at, fingerprint: fp.toString('hex'), message: `container ${name}: the record at offset ${at} is malformed (length ${len}, codec ${codec}, payload ${payloadLen})` });
      return;
    }
    each(Buffer.from(fp), { container: name, offset: at, len, codec, payloadLen }, buf.subarray(at + RECORD_HEADER, at + RECORD_HEADER + payloadLen));
    at += RECORD_HEADER + payloadLen;
  }
}

function plainOf(l: Located, payload: Buffer): Buffer {
  return l.codec === Codec.Raw ? Buffer.from(payload) : uncompressPayload(payload, l.len);
}

async function listContainers(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(path.join(dir, 'containers'))).filter((n) => /^c\d{6}\.vvac$/.test(n)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromSystemError(err, `listing ${dir}/containers`);
  }
}

/** Where every archived segment is (scanning the sealed containers; they are self-describing). */
async function scanIndex(dir: string, names?: string[]): Promise<Map<string, Located>> {
  const idx = new Map<string, Located>();
  for (const name of names ?? (await listContainers(dir))) {
    const buf = await fs.readFile(path.join(dir, 'containers', name)).catch((err) => {
      throw fromSystemError(err, `reading container ${name} of ${dir}`);
    });
    parseContainer(name, buf, (fp, l) => idx.set(fp.toString('latin1'), l), () => {});
  }
  return idx;
}

function encodeRecipe(size: number, entries: Array<{ fp?: Buffer; len: number }>): Buffer {
  let bytes = RECIPE_HEADER;
  for (const e of entries) bytes += e.fp ? 1 + 32 + 4 : 1 + 8;
  const b = Buffer.alloc(bytes);
  RECIPE_MAGIC.copy(b, 0);
  b[4] = 1;
  b.writeBigUInt64LE(BigInt(size), 8);
  let at = RECIPE_HEADER;
  for (const e of entries) {
    if (e.fp) {
      b[at] = 1;
      e.fp.copy(b, at + 1);
      b.writeUInt32LE(e.len, at + 33);
      at += 37;
    } else {
      b[at] = 2;
      b.writeBigUInt64LE(BigInt(e.len), at + 1);
      at += 9;
    }
  }
  return b;
}

/** A recipe's entries, each with its offset in the file; CORRUPT_RECORD when malformed. */
export function decodeRecipe(b: Buffer, where: string): { size: number; entries: Array<{ fp?: Buffer; len: number; at: number }> } {
  if (b.length < RECIPE_HEADER || !b.subarray(0, 4).equals(RECIPE_MAGIC) || b[4] !== 1) throw vmError('CORRUPT_RECORD', `${where}: not a version 1 archive recipe`);
  const size = Number(b.readBigUInt64LE(8));
  const entries: Array<{ fp?: Buffer; len: number; at: number }> = [];
  let at = RECIPE_HEADER;
  let pos = 0;
  while (at < b.length) {
    if (b[at] === 1 && at + 37 <= b.length) {
      const len = b.readUInt32LE(at + 33);
      entries.push({ fp: b.subarray(at + 1, at + 33), len, at: pos });
      pos += len;
      at += 37;
    } else if (b[at] === 2 && at + 9 <= b.length) {
      const len = Number(b.readBigUInt64LE(at + 1));
      entries.push({ len, at: pos });
      pos += len;
      at += 9;
    } else throw vmError('CORRUPT_RECORD', `${where}: malformed entry at byte ${at}`);
    if (pos > size) throw vmError('CORRUPT_RECORD', `${where}: entries run past the file's ${size} bytes`);
  }
  if (pos !== size) throw vmError('CORRUPT_RECORD', `${where}: entries describe ${pos} bytes, not ${size}`);
  return { size, entries };
}

function safePart(s: string): string {
  // Share and point names are namespace names (no '/'); encoded anyway so a file name is safe.
  return encodeURIComponent(s);
}

/** Writes one restore point into the archive at `dir` (incremental: archived segments are referenced). */
export function archivePoint(
  ns: Namespace,
  dir: string,
  vm: string,
  share: string,
  point: string,
  opts: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void; now?: () => number } = {},
): Promise<ArchiveReport> {
  return exclusive(dir, async () => {
    const now = opts.now ?? Date.now;
    const info = await ns.snapshots.get(share, point);
    const files = await snapshotFiles(ns, share, point);
    const logicalBytes = files.reduce((s, f) => s + f.version.size, 0);
    const report: ArchiveReport = { dir, share, point, files: files.length, logicalBytes, segments: 0, segmentsWritten: 0, bytesWritten: 0, skipped: false, verifiedAt: '' };
    await mkdirDurable(path.join(dir, 'containers')).catch((err) => {
      throw fromSystemError(err, `making ${dir}/containers`);
    });
    const top: ArchiveTop = (await readTop(dir)) ?? { format: 'vmvault-archive', version: ARCHIVE_VERSION, createdAt: new Date(now()).toISOString(), points: [] };
    if (top.points.some((p) => p.share === share && p.point === point)) {
      report.skipped = true;
    } else {
      // A failed run's unsealed container is dropped; sealed ones are scanned and reused.
      for (const n of await fs.readdir(path.join(dir, 'containers'))) if (n.endsWith('.partial')) await fs.rm(path.join(dir, 'containers', n), { force: true });
      const names = await listContainers(dir);
      const idx = await scanIndex(dir, names);
      let nextNo = names.length === 0 ? 1 : Number(names[names.length - 1].slice(1, 7)) + 1;
      let cur: { name: string; handle: fs.FileHandle; bytes: number; hash: ReturnType<typeof createHash> } | undefined;
      const sealed: Array<{ name: string; bytes: number; sha256: string }> = [];
      const seal = async () => {
        if (!cur) return;
        const c = cur;
        cur = undefined;
        await c.handle.sync();
        await c.handle.close();
        await fs.rename(path.join(dir, 'containers', `${c.name}.partial`), path.join(dir, 'containers', c.name));
        sealed.push({ name: c.name, bytes: c.bytes, sha256: c.hash.digest('hex') });
      };
      const append = async (fp: Buffer, plain: Buffer) => {
        if (!cur) {
          const name = `c${String(nextNo++).padStart(6, '0')}.vvac`;
          const handle = await fs.open(path.join(dir, 'containers', `${name}.partial`), 'wx', 0o600);
          const head = Buffer.alloc(CONTAINER_HEADER);
          CONTAINER_MAGIC.copy(head, 0);
          head[4] = 1;
          head.writeBigUInt64LE(BigInt(nextNo - 1), 8);
          await handle.write(head);
          cur = { name, handle, bytes: CONTAINER_HEADER, hash: createHash('sha256').update(head) };
        }
        const enc = encodePayload(plain);
        const payload = Buffer.from(enc.payload.buffer, enc.payload.byteOffset, enc.payload.byteLength);
        const rec = Buffer.alloc(RECORD_HEADER);
        fp.copy(rec, 0);
        rec.writeUInt32LE(plain.length, 32);
        rec[36] = enc.codec === Codec.Lz4 ? Codec.Lz4 : Codec.Raw;
        rec.writeUInt32LE(payload.length, 37);
        const offset = cur.bytes;
        await cur.handle.write(Buffer.concat([rec, payload]));
        cur.hash.update(rec).update(payload);
        cur.bytes += rec.length + payload.length;
        idx.set(fp.toString('latin1'), { container: cur.name, offset, len: plain.length, codec: rec[36], payloadLen: payload.length });
        report.segmentsWritten++;
        report.bytesWritten += rec.length + payload.length;
        if (cur.bytes >= CONTAINER_BYTES) await seal();
      };
      const manifestFiles: PointManifest['files'] = [];
      const recipeDir = path.join(dir, 'recipes', safePart(share), safePart(point));
      await mkdirDurable(recipeDir);
      let done = 0;
      try {
        for (const [n, f] of files.entries()) {
          const entries: Array<{ fp?: Buffer; len: number }> = [];
          let pending: Buffer[] = [];
          const flush = async () => {
            if (pending.length === 0) return;
            const got = await ns.store.readSegments(pending);
            for (let k = 0; k < pending.length; k++) {
              if (idx.has(pending[k].toString('latin1'))) continue; // twice in one batch
              const g = got[k];
              if (g === null) throw vmError('MISSING_SEGMENT', `segment ${pending[k].toString('hex').slice(0, 16)} of ${share}/${point}/${f.path} is not in the store; run verify`);
              await append(pending[k], g);
            }
            pending = [];
          };
          for await (const p of ns.store.view(f.version).leaves(0, f.version.size)) {
            if (opts.signal?.aborted) throw vmError('CANCELLED', 'the archive copy was cancelled');
            if (p.entry.zero) {
              const last = entries[entries.length - 1];
              if (last && !last.fp) last.len += p.entry.len;
              else entries.push({ len: p.entry.len });
              continue;
            }
            const fp = Buffer.from(p.entry.fp);
            entries.push({ fp, len: p.entry.len });
            report.segments++;
            if (!idx.has(fp.toString('latin1'))) {
              pending.push(fp);
              if (pending.length >= READ_BATCH) await flush();
            }
          }
          await flush();
          const recipe = encodeRecipe(f.version.size, entries);
          const rel = path.posix.join('recipes', safePart(share), safePart(point), `${n}.vvar`);
          const rfile = path.join(dir, rel);
          await fs.writeFile(rfile, recipe, { mode: 0o600 });
          await fsyncPath(rfile);
          manifestFiles.push({ path: f.path, size: f.version.size, mode: f.mode, recipe: rel, recipeSha256: sha256(recipe), segments: entries.filter((e) => e.fp).length });
          done += f.version.size;
          opts.onProgress?.(done, logicalBytes);
        }
        await seal();
      } catch (err) {
        if (cur) {
          const c = cur as { handle: fs.FileHandle };
          await c.handle.close().catch(() => {});
        }
        throw err;
      }
      await fsyncPath(path.join(dir, 'containers'));
      await fsyncPath(recipeDir);
      // The containers this point's segments live in, with their checksums.
      const used = new Set<string>();
      for (const mf of manifestFiles) {
        const { entries } = decodeRecipe(await fs.readFile(path.join(dir, mf.recipe)), mf.recipe);
        for (const e of entries) if (e.fp) used.add(idx.get(e.fp.toString('latin1'))!.container);
      }
      const sums = new Map(sealed.map((s) => [s.name, s]));
      for (const p of top.points) {
        const m = await readManifest(dir, p.manifest).catch(() => undefined);
        for (const c of m?.containers ?? []) if (!sums.has(c.name)) sums.set(c.name, c);
      }
      const containers: PointManifest['containers'] = [];
      for (const name of [...used].sort()) {
        let s = sums.get(name);
        if (!s) {
          const buf = await fs.readFile(path.join(dir, 'containers', name));
          s = { name, bytes: buf.length, sha256: sha256(buf) };
        }
        containers.push(s);
      }
      const manifest: PointManifest = {
        format: 'vmvault-archive-point',
        version: ARCHIVE_VERSION,
        vm,
        share,
        point,
        createdAt: info.created,
        archivedAt: new Date(now()).toISOString(),
        ...(info.lockedUntil ? { lockedUntil: info.lockedUntil } : {}),
        files: manifestFiles,
        containers,
      };
      const mrel = path.posix.join('points', safePart(share), `${safePart(point)}.json`);
      const text = JSON.stringify(manifest, null, 1) + '\n';
      await mkdirDurable(path.join(dir, 'points', safePart(share)));
      await writeAtomic(path.join(dir, mrel), manifest);
      const written = await fs.readFile(path.join(dir, mrel));
      if (written.toString('utf8') !== text) throw vmError('IO', `${mrel}: what was read back differs from what was written`);
      top.points.push({ vm, share, point, manifest: mrel, sha256: sha256(written), archivedAt: manifest.archivedAt });
      await writeAtomic(path.join(dir, ARCHIVE_FILE), top);
    }
    // Check what was just written (or is there): the point's manifest, recipes and segments.
    const v = await verifyArchive(dir, { share, point });
    if (v.problems.length > 0) throw vmError('CORRUPT_SEGMENT', `archive ${dir}: ${share}/${point} failed verification after writing: ${v.problems[0].message}${v.problems.length > 1 ? ` (and ${v.problems.length - 1} more)` : ''}`);
    report.verifiedAt = new Date(now()).toISOString();
    return report;
  });
}

async function readManifest(dir: string, rel: string): Promise<PointManifest> {
  const file = path.join(dir, rel);
  const text = await fs.readFile(file, 'utf8');
  const m = JSON.parse(text) as PointManifest;
  if (m?.format !== 'vmvault-archive-point' || !Array.isArray(m.files) || !Array.isArray(m.containers)) throw vmError('CORRUPT_RECORD', `${rel} is not a point manifest`);
  if (m.version > ARCHIVE_VERSION) throw vmError('UNSUPPORTED_FORMAT', `${rel} has version ${m.version}; this appliance reads up to ${ARCHIVE_VERSION}`);
  return m;
}

/**
 * Checks an archive (every point, or one): each manifest against its checksum in the top file,
 * each recipe against its manifest, each container against its checksum, and every segment a
 * recipe names re-hashed against its fingerprint. A problem names the container and offset,
 * and the points and files that use the damaged segment.
 */
export async function verifyArchive(dir: string, only?: { share?: string; point?: string }): Promise<ArchiveVerifyReport> {
  const top = await readTop(dir);
  if (!top) throw vmError('NOT_FOUND', `${dir} holds no vmvault archive (${ARCHIVE_FILE})`);
  const problems: ArchiveProblem[] = [];
  const points = top.points.filter((p) => (only?.point === undefined || p.point === only.point) && (only?.share === undefined || p.share === only.share));
  if (only?.point !== undefined && points.length === 0) throw vmError('NOT_FOUND', `archive ${dir} holds no point ${only.point}`);
  /** fingerprint -> where it is used */
  const users = new Map<string, Array<{ point: string; file: string; at: number }>>();
  const containers = new Map<string, { bytes: number; sha256: string }>();
  for (const p of points) {
    const label = `${p.share}/${p.point}`;
    let raw: Buffer;
    try {
      raw = await fs.readFile(path.join(dir, p.manifest));
    } catch {
      problems.push({ kind: 'corrupt-manifest', point: label, message: `point ${label}: manifest ${p.manifest} is missing` });
      continue;
    }
    if (sha256(raw) !== p.sha256) {
      problems.push({ kind: 'corrupt-manifest', point: label, message: `point ${label}: manifest ${p.manifest} does not match its checksum in ${ARCHIVE_FILE}` });
      continue;
    }
    const m = await readManifest(dir, p.manifest);
    for (const c of m.containers) containers.set(c.name, { bytes: c.bytes, sha256: c.sha256 });
    for (const f of m.files) {
      let rb: Buffer;
      try {
        rb = await fs.readFile(path.join(dir, f.recipe));
      } catch {
        problems.push({ kind: 'missing-file', point: label, file: f.path, message: `point ${label}, file ${f.path}: recipe ${f.recipe} is missing` });
        continue;
      }
      if (sha256(rb) !== f.recipeSha256) {
        problems.push({ kind: 'corrupt-recipe', point: label, file: f.path, message: `point ${label}, file ${f.path}: recipe ${f.recipe} does not match its checksum` });
        continue;
      }
      for (const e of decodeRecipe(rb, f.recipe).entries) {
        if (!e.fp) continue;
        const k = e.fp.toString('latin1');
        let u = users.get(k);
        if (!u) users.set(k, (u = []));
        if (u.length < 4) u.push({ point: label, file: f.path, at: e.at });
      }
    }
  }
  let segments = 0;
  const found = new Set<string>();
  const name = (k: string) => {
    const u = users.get(k) ?? [];
    return u.length === 0 ? '' : ` (used by ${u.map((x) => `point ${x.point}, file ${x.file} at ${x.at}`).join('; ')})`;
  };
  for (const [cname, want] of [...containers].sort()) {
    let buf: Buffer;
    try {
      buf = await fs.readFile(path.join(dir, 'containers', cname));
    } catch {
      problems.push({ kind: 'corrupt-container', container: cname, message: `container ${cname} is missing` });
      continue;
    }
    const before = problems.length;
    parseContainer(
      cname,
      buf,
      (fp, l, payload) => {
        const k = fp.toString('latin1');
        if (!users.has(k)) return;
        segments++;
        let ok = false;
        try {
          ok = fingerprint(plainOf(l, payload)).equals(fp);
        } catch {
          ok = false;
        }
        if (ok) found.add(k);
        else {
          const u = users.get(k)![0];
          problems.push({ kind: 'corrupt-segment', container: cname, offset: l.offset, fingerprint: fp.toString('hex'), point: u?.point, file: u?.file, message: `segment ${fp.toString('hex').slice(0, 16)}… in container ${cname} at offset ${l.offset} failed verification${name(k)}` });
        }
      },
      (p) => problems.push(p),
    );
    if (problems.length === before && (buf.length !== want.bytes || sha256(buf) !== want.sha256)) {
      problems.push({ kind: 'corrupt-container', container: cname, message: `container ${cname} does not match its checksum (${buf.length} bytes, manifest says ${want.bytes}), though every segment it holds for these points verifies` });
    }
  }
  for (const [k] of users) {
    if (found.has(k)) continue;
    if (problems.some((p) => p.fingerprint === Buffer.from(k, 'latin1').toString('hex'))) continue;
    const u = users.get(k)![0];
    problems.push({ kind: 'missing-segment', fingerprint: Buffer.from(k, 'latin1').toString('hex'), point: u.point, file: u.file, message: `segment ${Buffer.from(k, 'latin1').toString('hex').slice(0, 16)}… is in no container of the archive${name(k)}` });
  }
  return { dir, points: points.length, containers: containers.size, segments, problems };
}

/** The archive as a SegmentSource (roster contract): segments by fingerprint, unverified. */
export async function openArchiveSource(dir: string, label: string): Promise<SegmentSource> {
  if (!(await readTop(dir))) throw vmError('NOT_FOUND', `${dir} holds no vmvault archive (${ARCHIVE_FILE})`);
  const idx = await scanIndex(dir);
  return {
    name: label,
    async fetch(fp: Buffer): Promise<Buffer | null> {
      const l = idx.get(fp.toString('latin1'));
      if (!l) return null;
      const h = await fs.open(path.join(dir, 'containers', l.container), 'r');
      try {
        const payload = Buffer.alloc(l.payloadLen);
        await h.read(payload, 0, l.payloadLen, l.offset + RECORD_HEADER);
        return plainOf(l, payload);
      } finally {
        await h.close();
      }
    },
    // One pass: the wanted records grouped by container, each container opened once and read
    // in offset order (records next to each other in one read).
    async fetchMany(fps: Buffer[]): Promise<Array<Buffer | null>> {
      const out: Array<Buffer | null> = new Array(fps.length).fill(null);
      const byContainer = new Map<string, Array<{ i: number; l: Located }>>();
      fps.forEach((fp, i) => {
        const l = idx.get(fp.toString('latin1'));
        if (!l) return;
        let list = byContainer.get(l.container);
        if (!list) byContainer.set(l.container, (list = []));
        list.push({ i, l });
      });
      for (const [name, list] of byContainer) {
        list.sort((a, b) => a.l.offset - b.l.offset);
        const h = await fs.open(path.join(dir, 'containers', name), 'r');
        try {
          for (let k = 0; k < list.length; ) {
            // A run of records whose bytes are at most 1 MiB apart is read at once.
            let end = k + 1;
            const start = list[k].l.offset + RECORD_HEADER;
            let stop = start + list[k].l.payloadLen;
            while (end < list.length && list[end].l.offset + RECORD_HEADER - stop <= 1 << 20 && list[end].l.offset + RECORD_HEADER + list[end].l.payloadLen - start <= 8 << 20) {
              stop = Math.max(stop, list[end].l.offset + RECORD_HEADER + list[end].l.payloadLen);
              end++;
            }
            const buf = Buffer.alloc(stop - start);
            const { bytesRead } = await h.read(buf, 0, buf.length, start);
            for (; k < end; k++) {
              const { i, l } = list[k];
              const at = l.offset + RECORD_HEADER - start;
              if (at + l.payloadLen > bytesRead) continue; // cut short: this copy cannot give it
              try {
                out[i] = plainOf(l, buf.subarray(at, at + l.payloadLen));
              } catch {
                out[i] = null; // a damaged payload: the caller asks the next copy
              }
            }
          }
        } finally {
          await h.close();
        }
      }
      return out;
    },
    async close() {},
  };
}

/** Writes an archived file's bytes to `out` (restore from an archive; checks every segment). */
export async function extractFile(dir: string, share: string, point: string, filePath: string, out: string): Promise<void> {
  const top = await readTop(dir);
  const p = top?.points.find((x) => x.share === share && x.point === point);
  if (!p) throw vmError('NOT_FOUND', `archive ${dir} holds no point ${share}/${point}`);
  const m = await readManifest(dir, p.manifest);
  const f = m.files.find((x) => x.path === filePath);
  if (!f) throw vmError('NOT_FOUND', `point ${share}/${point} of archive ${dir} has no file ${filePath}`);
  const src = await openArchiveSource(dir, `archive ${dir}`);
  const { entries, size } = decodeRecipe(await fs.readFile(path.join(dir, f.recipe)), f.recipe);
  const h = await fs.open(out, 'w', 0o600);
  try {
    await h.truncate(size);
    for (const e of entries) {
      if (!e.fp) continue;
      const b = await src.fetch(e.fp);
      if (!b || !fingerprint(b).equals(e.fp)) throw vmError('CORRUPT_SEGMENT', `archive ${dir}: segment ${e.fp.toString('hex').slice(0, 16)} of ${filePath} at ${e.at} is missing or damaged`);
      await h.write(b, 0, b.length, e.at);
    }
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * A point of the archive as a restore reads it (a point the primary no longer holds): its
 * files from the manifest, each read through its recipe, the segments a read covers fetched in
 * one pass and re-hashed; a segment missing or damaged here fails the read naming it.
 */
export async function openArchivePoint(dir: string, share: string, point: string, label: string): Promise<PointSource> {
  const top = await readTop(dir);
  const p = top?.points.find((x) => x.share === share && x.point === point);
  if (!p) throw vmError('NOT_FOUND', `archive ${dir} holds no point ${share}/${point}`);
  const m = await readManifest(dir, p.manifest);
  const src = await openArchiveSource(dir, label);
  return {
    name: label,
    files: async () => m.files.map((f) => ({ path: f.path, size: f.size })),
    async open(filePath: string): Promise<PointFile> {
      const f = m.files.find((x) => x.path === filePath);
      if (!f) throw vmError('NOT_FOUND', `point ${share}/${point} of ${label} has no file ${filePath}`);
      const { entries, size } = decodeRecipe(await fs.readFile(path.join(dir, f.recipe)), f.recipe);
      return {
        size,
        async dataRanges() {
          const out: Array<{ start: number; end: number }> = [];
          for (const e of entries) {
            if (!e.fp) continue;
            const last = out[out.length - 1];
            if (last && last.end === e.at) last.end = e.at + e.len;
            else out.push({ start: e.at, end: e.at + e.len });
          }
          return out;
        },
        async read(pos: number, len: number): Promise<Buffer> {
          const out = Buffer.alloc(len);
          // The first entry ending after pos (entries are in file order).
          let lo = 0;
          let hi = entries.length;
          while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if (entries[mid].at + entries[mid].len <= pos) lo = mid + 1;
            else hi = mid;
          }
          const want: Array<{ fp: Buffer; at: number; len: number }> = [];
          for (let i = lo; i < entries.length && entries[i].at < pos + len; i++) {
            const e = entries[i];
            if (e.fp) want.push({ fp: e.fp, at: e.at, len: e.len });
          }
          const got = await src.fetchMany!(want.map((w) => w.fp));
          want.forEach((w, k) => {
            const b = got[k];
            if (!b || !fingerprint(b).equals(w.fp)) {
              throw vmError('CORRUPT_SEGMENT', `${label}: segment ${w.fp.toString('hex').slice(0, 16)} of ${share}/${point} ${filePath} at ${w.at} is ${b ? 'damaged' : 'missing'}`, { fingerprint: w.fp.toString('hex') });
            }
            const from = Math.max(pos, w.at);
            const to = Math.min(pos + len, w.at + w.len);
            b.copy(out, from - pos, from - w.at, to - w.at);
          });
          return out;
        },
        close: async () => {},
      };
    },
    close: () => src.close(),
  };
}
