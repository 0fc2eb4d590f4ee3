// A varied tree of files, and a description of a tree (type, mode, size, content hash, link
// target, mtime) to compare two copies of it entry by entry.

import fs from 'node:fs/promises';
import path from 'node:path';
import { Rng } from './data.js';
import { sha256File } from './run-tool.js';

export interface Entry {
  type: 'file' | 'dir' | 'link';
  /** Permission bits (with set-id and sticky), not for links. */
  mode?: string;
  size?: number;
  sha256?: string;
  target?: string;
  /** mtime in whole milliseconds (the mount keeps milliseconds). */
  mtimeMs: number;
}

export type TreeDescription = Record<string, Entry>;

/** Every entry under `root` ('' is the root itself), by relative path. `skip` names top-level entries to leave out. */
export async function describeTree(root: string, skip: string[] = ['.snapshots']): Promise<TreeDescription> {
  const out: TreeDescription = {};
  const visit = async (rel: string): Promise<void> => {
    const full = path.join(root, rel);
    const st = await fs.lstat(full);
    const mtimeMs = Math.floor(st.mtimeMs);
    if (st.isSymbolicLink()) {
      out[rel] = { type: 'link', target: await fs.readlink(full), mtimeMs };
    } else if (st.isDirectory()) {
      out[rel] = { type: 'dir', mode: (st.mode & 0o7777).toString(8), mtimeMs };
      const names = (await fs.readdir(full)).filter((n) => !(rel === '' && skip.includes(n))).sort();
      for (const n of names) await visit(rel === '' ? n : path.join(rel, n));
    } else if (st.isFile()) {
      out[rel] = { type: 'file', mode: (st.mode & 0o7777).toString(8), size: st.size, sha256: await sha256File(full), mtimeMs };
    } else {
      throw new Error(`${full}: unexpected file type (mode ${st.mode.toString(8)})`);
    }
  };
  await visit('');
  return out;
}

/** Lines naming every difference between two descriptions (empty when equal). */
export function treeDiff(a: TreeDescription, b: TreeDescription, aName = 'a', bName = 'b'): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[k];
    const y = b[k];
    if (!x) out.push(`${k || '.'}: only in ${bName}`);
    else if (!y) out.push(`${k || '.'}: only in ${aName}`);
    else {
      for (const f of ['type', 'mode', 'size', 'sha256', 'target', 'mtimeMs'] as const) {
        if (x[f] !== y[f]) out.push(`${k || '.'}: ${f} ${String(x[f])} in ${aName}, ${String(y[f])} in ${bName}`);
      }
    }
  }
  return out;
}

export interface VariedTree {
  entries: number;
  bytes: number;
}

/**
 * A tree with nested directories, many modes (set-id bits included), old mtimes with
 * millisecond parts, symlinks (relative, absolute, dangling, to a directory), empty files and
 * directories, names with spaces and non-ASCII, hidden files, a sparse file, binaries and text.
 */
export async function makeVariedTree(root: string, seed = 7): Promise<VariedTree> {
  const rng = new Rng(seed);
  const MiB = 1024 * 1024;
  let bytes = 0;
  const files: Array<[string, Buffer | (() => Promise<void>), number]> = [];
  const text = (n: number) => {
    const words = ['disk', 'grain', 'segment', 'extent', 'snapshot', 'backup', 'vmdk', 'qcow2', 'inode', 'journal'];
    let s = '';
    while (s.length < n) s += `${rng.pick(words)} ${rng.int(1_000_000)}\n`;
    return Buffer.from(s.slice(0, n));
  };
  files.push(['docs/readme.txt', text(3000), 0o644]);
  files.push(['docs/empty', Buffer.alloc(0), 0o600]);
  files.push(['docs/.hidden', text(10), 0o640]);
  files.push(['bin/tool', rng.bytes(MiB + 12345), 0o755]);
  files.push(['bin/setuid-tool', rng.bytes(4096), 0o4755]);
  files.push(['bin/readonly', text(777), 0o444]);
  files.push(['data/big.bin', rng.bytes(6 * MiB), 0o640]);
  files.push(['data/zeros.bin', Buffer.alloc(2 * MiB), 0o644]);
  files.push(['deep/a/b/c/d/e/f/g/h/leaf.txt', text(100), 0o600]);
  files.push(['names/with space.txt', text(50), 0o644]);
  files.push(['names/ünïcödé-名前.txt', text(60), 0o644]);
  files.push(['names/-starts-with-dash', text(5), 0o644]);
  files.push(['ro/inside.txt', text(40), 0o644]);
  for (let i = 0; i < 120; i++) files.push([`many/f${String(i).padStart(3, '0')}`, text(rng.int(5000)), rng.pick([0o644, 0o600, 0o444, 0o664])]);
  // Sparse: 48 MiB with three islands; the holes read as zeros.
  files.push([
    'data/sparse.img',
    async () => {
      const fh = await fs.open(path.join(root, 'data/sparse.img'), 'w');
      try {
        for (const at of [0, 17 * MiB + 4096, 48 * MiB - 65536]) await fh.write(rng.bytes(65536), 0, 65536, at);
      } finally {
        await fh.close();
      }
    },
    0o644,
  ]);
  for (const [rel, content, mode] of files) {
    const full = path.join(root, rel);
    await fs.mkdir(path.dirname(full), { recursive: true });
    if (typeof content === 'function') await content();
    else await fs.writeFile(full, content);
    await fs.chmod(full, mode);
    bytes += (await fs.stat(full)).size;
  }
  await fs.mkdir(path.join(root, 'emptydir'));
  const links: Array<[string, string]> = [
    ['links/rel', '../docs/readme.txt'],
    ['links/abs-dangling', '/nonexistent/vmvault/target'],
    ['links/to-dir', '../deep'],
    ['links/long', 'x'.repeat(200)],
  ];
  for (const [rel, target] of links) {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.symlink(target, path.join(root, rel));
  }
  // Old times with millisecond parts; directories last and deepest first, since filling a
  // directory changes its mtime.
  const all = Object.keys(await describeTree(root, []));
  const base = Date.UTC(2003, 4, 5, 6, 7, 8, 123);
  let i = 0;
  const when = () => (base + (i++) * 86_400_017) / 1000;
  for (const rel of all) {
    const full = path.join(root, rel);
    const st = await fs.lstat(full);
    if (st.isSymbolicLink()) await fs.lutimes(full, when(), when());
    else if (!st.isDirectory()) await fs.utimes(full, when(), when());
  }
  const dirs = [...all];
  dirs.sort((a, b) => b.split('/').length - a.split('/').length);
  for (const rel of dirs) {
    const full = path.join(root, rel);
    if ((await fs.lstat(full)).isDirectory()) {
      if (rel === 'ro') await fs.chmod(full, 0o555);
      if (rel === 'many') await fs.chmod(full, 0o2775);
      if (rel === 'emptydir') await fs.chmod(full, 0o750);
      await fs.utimes(full, when(), when());
    }
  }
  return { entries: all.length, bytes };
}
