// NTFS, FAT and exFAT through The Sleuth Kit, a separate process that reads the volume at a
// plain file path and offset: `fls -r -m /` gives paths and attributes in one pass (about as
// fast as anything here can list them); it gives no extents, so entries carry none and
// readFileRange reads their bytes with `icat` (tsk_loaddb would give extents too, but took 6.6 s
// against fls's 0.37 s on the sample image, far over the catalog's 1.5x budget).
// Body format (fls -m): MD5|name|inode|mode|uid|gid|size|atime|mtime|ctime|crtime, times in s.

import { spawn } from 'node:child_process';
import readline from 'node:readline';
import type { FileEntry, Volume, WalkOptions } from '../source.js';
import { vmError } from '../../errors.js';
import { checkAbort } from './entry.js';

const TSK_TYPE: Record<string, string> = { ntfs: 'ntfs', fat: 'fat', exfat: 'exfat', ext: 'ext' };

function tskArgs(vol: Volume): string[] {
  if (vol.path === undefined) throw vmError('NOT_SUPPORTED', `${vol.name}: no plain file path for Sleuth Kit`);
  const off = vol.pathOffset ?? 0;
  if (off % 512 !== 0) throw vmError('NOT_SUPPORTED', `${vol.name}: offset ${off} is not a whole sector`);
  return ['-o', String(off / 512), '-f', TSK_TYPE[vol.fs] ?? 'auto', '-i', 'raw'];
}

function modeOf(s: string): { type: FileEntry['type']; mode: number } {
  // e.g. "r/rrwxr-xr-x", "d/drwxr-xr-x", "l/lrwxrwxrwx"; TSK invents the permission bits on NTFS/FAT.
  const [kind, perms = ''] = s.split('/');
  const type: FileEntry['type'] = kind === 'r' ? 'file' : kind === 'd' ? 'dir' : kind === 'l' ? 'symlink' : 'other';
  let mode = 0;
  const p = perms.slice(1);
  for (let i = 0; i < 9 && i < p.length; i++) if (p[i] !== '-') mode |= 1 << (8 - i);
  return { type, mode };
}

export async function* walkTsk(vol: Volume, opts: WalkOptions): AsyncGenerator<FileEntry> {
  const args = ['-r', '-m', '/', ...tskArgs(vol), vol.path!];
  const child = spawn('fls', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
  const exited = new Promise<number>((res) => child.on('close', (code) => res(code ?? -1)));
  const spawnFailed = new Promise<never>((_res, rej) => child.on('error', (e) => rej(vmError('NOT_SUPPORTED', `fls could not run (is sleuthkit installed?): ${e.message}`))));
  spawnFailed.catch(() => undefined);
  const onAbort = () => child.kill('SIGTERM');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let count = 0;
  try {
    const rl = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
    for await (const line of rl) {
      checkAbort(opts);
      const f = line.split('|');
      if (f.length < 11) continue;
      // The name may itself hold '|': the fixed fields are the first one and the last nine.
      const name = f.slice(1, f.length - 9).join('|');
      const [inode, modeStr, uid, gid, size, , mtime] = f.slice(f.length - 9);
      if (name.endsWith(' (deleted)') || name.endsWith(' (deleted-realloc)')) continue;
      if (name.endsWith(' ($FILE_NAME)')) continue; // NTFS: the $FILE_NAME attribute's own times
      if (name.endsWith(' (Volume Label Entry)')) continue; // FAT/exFAT: the label, not a file
      const rel = name.startsWith('/') ? name : `/${name}`;
      const parts = rel.split('/');
      if (parts[1]?.startsWith('$')) continue; // NTFS metafiles, $OrphanFiles, FAT's $FAT1...
      const last = parts[parts.length - 1];
      if (last === '.' || last === '..') continue;
      if (vol.fs === 'ntfs' && last.includes(':')) continue; // alternate data streams
      const { type, mode } = modeOf(modeStr);
      count++;
      if (count % 1024 === 0) opts.onProgress?.(count);
      yield {
        path: rel, type, size: type === 'dir' ? 0 : Number(size), mtimeMs: Number(mtime) * 1000, mode,
        uid: Number(uid), gid: Number(gid), inode: parseInt(inode, 10),
      };
    }
    const code = await Promise.race([exited, spawnFailed]);
    checkAbort(opts);
    if (code !== 0) opts.onNote?.(`${vol.name}: fls exited ${code}: ${stderr.trim() || 'no message'} (listed what it gave)`);
    opts.onProgress?.(count);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    if (child.exitCode === null) child.kill('SIGTERM');
  }
}

/** The file's bytes through `icat` (the whole file, then cut: fine for restores of single files). */
export async function readTsk(vol: Volume, entry: FileEntry, offset: number, length: number): Promise<Buffer> {
  const args = [...tskArgs(vol), vol.path!, String(entry.inode)];
  const child = spawn('icat', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let got = 0;
  const end = offset + length;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.on('data', (d: Buffer) => {
    if (got < end) chunks.push(d);
    got += d.length;
    if (got >= end) child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((res, rej) => {
    child.on('error', (e) => rej(vmError('NOT_SUPPORTED', `icat could not run: ${e.message}`)));
    child.on('close', (c) => res(c));
  });
  const all = Buffer.concat(chunks);
  if (code !== 0 && all.length < Math.min(end, entry.size)) {
    throw vmError('IO', `${vol.name}: icat of inode ${entry.inode} (${entry.path}) failed: ${stderr.trim()}`);
  }
  return all.subarray(offset, Math.min(end, entry.size));
}
