// Disk images made by the real tools for the catalog tests: a directory tree, then an MBR disk
// whose first partition (at 1 MiB) is an ext4 made by `mkfs.ext4 -d` from that tree.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export interface TreeSpec {
  /** Relative path -> content (a string or a byte count of seeded random bytes); a trailing '/' makes a directory. */
  [rel: string]: string | number;
}

export function makeTree(dir: string, spec: TreeSpec, seed = 'tree'): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [rel, content] of Object.entries(spec)) {
    const p = path.join(dir, rel);
    if (rel.endsWith('/')) {
      fs.mkdirSync(p, { recursive: true });
      continue;
    }
    fs.mkdirSync(path.dirname(p), { recursive: true });
    if (typeof content === 'number') fs.writeFileSync(p, seeded(`${seed}:${rel}`, content));
    else fs.writeFileSync(p, content);
  }
}

export function seeded(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  let h = crypto.createHash('sha256').update(seed).digest();
  for (let at = 0; at < n; at += 32) {
    h.copy(out, at, 0, Math.min(32, n - at));
    h = crypto.createHash('sha256').update(h).digest();
  }
  return out;
}

/** An MBR disk of `mib` MiB with one ext4 partition at 1 MiB holding `tree`. */
export function makeExtDisk(file: string, tree: string, mib = 24): void {
  fs.rmSync(file, { force: true });
  execFileSync('truncate', ['-s', `${mib}M`, file]);
  execFileSync('sfdisk', ['-q', file], { input: 'start=2048, type=83\n' });
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', tree, '-E', `offset=${1024 * 1024}`, file, `${mib - 1}M`], { env: { ...process.env, E2FSPROGS_FAKE_TIME: '1735689600' } });
}

/** Every entry of a local tree: relative path -> { type, size, mode, mtimeMs }. */
export function listTree(dir: string): Map<string, { type: string; size: number; mode: number; mtimeMs: number }> {
  const out = new Map<string, { type: string; size: number; mode: number; mtimeMs: number }>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = `${rel}/${e.name}`;
      const st = fs.lstatSync(path.join(dir, r));
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
      out.set(r, { type, size: type === 'dir' ? 0 : st.size, mode: st.mode & 0o7777, mtimeMs: Math.floor(st.mtimeMs) });
      if (type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}
