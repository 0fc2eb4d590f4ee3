// Trees of real files (binaries, libraries, text, compressed docs) copied from the system, to
// build disk images whose content looks like a guest's: what dedup and the write path meet in
// practice, not a PRNG's output.

import fs from 'node:fs/promises';
import path from 'node:path';

export interface CopyResult {
  files: number;
  bytes: number;
}

/**
 * Copies regular files from `roots` (walked in name order, depth first) into `dest`, keeping
 * their paths below the root's name, until `budget` bytes are copied. Files larger than
 * `maxFile` and anything unreadable are skipped.
 */
export async function copyRealFiles(dest: string, roots: string[], budget: number, maxFile = 16 * 1024 * 1024): Promise<CopyResult> {
  const out: CopyResult = { files: 0, bytes: 0 };
  const walk = async (src: string, rel: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await fs.readdir(src, { withFileTypes: true });
    } catch {
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (out.bytes >= budget) return;
      const s = path.join(src, e.name);
      const r = path.join(rel, e.name);
      if (e.isDirectory()) await walk(s, r);
      else if (e.isFile()) {
        try {
          const st = await fs.stat(s);
          if (st.size === 0 || st.size > maxFile || out.bytes + st.size > budget) continue;
          await fs.mkdir(path.join(dest, rel), { recursive: true });
          await fs.copyFile(s, path.join(dest, r));
          out.files++;
          out.bytes += st.size;
        } catch {
          // unreadable or vanished: not needed
        }
      }
    }
  };
  for (const root of roots) await walk(root, path.basename(root));
  return out;
}
