// Inputs for the store benches: a file of real binaries (the files under /usr, concatenated in
// name order, each once), kept in the temporary directory so later runs read it from the page
// cache; and unique variants of it for the scaling run.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const MiB = 2 ** 20;

/** Regular files of at least 4 KiB under /usr's binary and library directories, in name order. */
function listBinaries(): string[] {
  const files: string[] = [];
  const walk = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      try {
        const st = fs.lstatSync(p);
        if (st.isDirectory() && depth < 6) walk(p, depth + 1);
        else if (st.isFile() && st.size >= 4096) files.push(p);
      } catch {
        // vanished or unreadable
      }
    }
  };
  for (const dir of ['/usr/bin', '/usr/sbin', '/usr/lib', '/usr/libexec', '/usr/share', '/opt']) walk(dir, 0);
  return files;
}

/**
 * The path of a file of `size` bytes of real binaries, made on first use. No file is used
 * twice, so the content is what a backup of a binary tree sees: mostly unique, compressible,
 * with the duplicates a real tree has.
 */
export function binariesFile(size: number): string {
  const dir = path.join(os.tmpdir(), 'vmvault-bench');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `binaries-${size / MiB}M.bin`);
  if (fs.existsSync(file) && fs.statSync(file).size === size) return file;
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w');
  let at = 0;
  try {
    for (const f of listBinaries()) {
      if (at >= size) break;
      let data: Buffer;
      try {
        data = fs.readFileSync(f);
      } catch {
        continue;
      }
      const n = Math.min(data.length, size - at);
      fs.writeSync(fd, data, 0, n, at);
      at += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  if (at < size) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`found only ${at} bytes of binaries under /usr and /opt; need ${size}`);
  }
  fs.renameSync(tmp, file);
  return file;
}

/** The first `bytes` of `file`: the benches take a sample of a larger input file. */
export function readHead(file: string, bytes: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.allocUnsafe(bytes);
    let at = 0;
    while (at < bytes) {
      const n = fs.readSync(fd, b, at, bytes - at, at);
      if (n === 0) throw new Error(`${file} is shorter than ${bytes} bytes`);
      at += n;
    }
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Makes `src` unique for pass `pass`: an 8-byte stamp (pass, position) every `every` bytes.
 * With `every` at most half the minimum segment size, every segment holds a whole stamp, so no
 * segment of one pass equals one of another pass; the bytes between stamps stay real binaries,
 * so compression still sees real data.
 */
export function stamp(src: Buffer, dst: Buffer, pass: number, every: number): void {
  src.copy(dst, 0, 0, src.length);
  for (let at = 0; at + 8 <= dst.length; at += every) {
    dst.writeUInt32LE(pass, at);
    dst.writeUInt32LE(at / every, at + 4);
  }
}
