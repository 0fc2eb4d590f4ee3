// Writer for test/fuse-crash.test.ts: writes into a round's directory of the mount until it is
// killed, and prints a JSON line to stdout after each fsync (or fsync + rename) returns, which
// is what the test may hold the appliance to. Four streams at once:
//   s<i>    new files, each written whole, fsynced, then reported            {"synced":"s3"}
//   ov<j>   existing files (version 1, written by the test) overwritten in random 256 KiB
//           order by passes 2, 3, ..., closed and reopened every quarter pass, fsynced after
//           each pass and reported                                            {"synced":"ov1","version":4}
//   big     one large new file written sequentially in 1 MiB writes, never fsynced
//   cur     replaced atomically: cur.tmp written, fsynced, renamed over cur, the directory
//           fsynced, reported                                                 {"replaced":"cur","version":2}
// Contents come from block-pattern.ts keyed by `<key>/<name>`, so the test can regenerate them.
//
// usage: node crash-writer.js <dir> <key> <seed>

import fs from 'node:fs/promises';
import path from 'node:path';
import { pattern } from './block-pattern.js';
import { Rng } from './data.js';

export const OV_FILES = 4;
export const OV_SIZE = 6 * 1024 * 1024;
export const BIG_SIZE = 512 * 1024 * 1024;
const CHUNK = 256 * 1024;

/** Size of new file s<i>: not a multiple of the block size, so the last block is short. */
export function syncedSize(i: number): number {
  return 256 * 1024 + ((i * 7919) % 48) * 65536 + 1234;
}

/** Size of version k of cur. */
export function curSize(k: number): number {
  return 128 * 1024 + ((k * 104729) % 32) * 16384 + 777;
}

export const fileKey = (key: string, name: string) => `${key}/${name}`;

async function writeWhole(fh: fs.FileHandle, key: string, version: number, size: number): Promise<void> {
  for (let off = 0; off < size; off += CHUNK) {
    const len = Math.min(CHUNK, size - off);
    await fh.write(pattern(key, version, off, len), 0, len, off);
  }
}

async function main(): Promise<void> {
  const [dir, key, seedArg] = process.argv.slice(2);
  if (!dir || !key || !seedArg) throw new Error('usage: crash-writer <dir> <key> <seed>');
  const rng = new Rng(Number(seedArg));
  const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

  const synced = async (): Promise<void> => {
    for (let i = 0; ; i++) {
      const name = `s${i}`;
      const fh = await fs.open(path.join(dir, name), 'wx');
      await writeWhole(fh, fileKey(key, name), 1, syncedSize(i));
      await fh.sync();
      say({ synced: name, version: 1 });
      await fh.close();
    }
  };

  const overwrite = async (): Promise<void> => {
    const chunks = OV_SIZE / CHUNK;
    for (let pass = 2; ; pass++) {
      for (let j = 0; j < OV_FILES; j++) {
        const name = `ov${j}`;
        const order = Array.from({ length: chunks }, (_, c) => c);
        for (let c = order.length - 1; c > 0; c--) {
          const k = rng.int(c + 1);
          [order[c], order[k]] = [order[k], order[c]];
        }
        let fh = await fs.open(path.join(dir, name), 'r+');
        for (const [i, c] of order.entries()) {
          // Close and reopen every quarter of the pass: close(2) commits what is buffered (without
          // fsync), so a kill later in the pass finds the file half old, half new.
          if (i > 0 && i % (chunks / 4) === 0) {
            await fh.close();
            fh = await fs.open(path.join(dir, name), 'r+');
          }
          await fh.write(pattern(fileKey(key, name), pass, c * CHUNK, CHUNK), 0, CHUNK, c * CHUNK);
        }
        await fh.sync();
        say({ synced: name, version: pass });
        await fh.close();
      }
    }
  };

  const big = async (): Promise<void> => {
    const fh = await fs.open(path.join(dir, 'big'), 'wx');
    const MiB = 1024 * 1024;
    for (let off = 0; off < BIG_SIZE; off += MiB) await fh.write(pattern(fileKey(key, 'big'), 1, off, MiB), 0, MiB, off);
    await fh.close();
  };

  const replace = async (): Promise<void> => {
    const d = await fs.open(dir, 'r');
    for (let k = 1; ; k++) {
      const tmp = path.join(dir, 'cur.tmp');
      const fh = await fs.open(tmp, 'w');
      await writeWhole(fh, fileKey(key, 'cur'), k, curSize(k));
      await fh.sync();
      await fh.close();
      await fs.rename(tmp, path.join(dir, 'cur'));
      await d.sync();
      say({ replaced: 'cur', version: k });
    }
  };

  say({ started: true });
  await Promise.all([synced(), overwrite(), big(), replace()]);
}

// Run only as a program, not when the test imports the sizes above.
if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  main().catch((err) => {
    process.stderr.write(`crash-writer: ${(err as Error).stack}\n`);
    process.exit(1);
  });
}
