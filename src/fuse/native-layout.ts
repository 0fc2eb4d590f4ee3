// Reading (and in one place writing) C structs of fuse-native 2.2.6 and libfuse 2.9.x from JS,
// to correct two faults without compiling an addon of our own. Every access first checks that
// the memory looks as expected and otherwise gives up with a log line, leaving the fault in
// place rather than guessing. Layouts are those of 64-bit Linux (x86_64 and aarch64 alike, apart
// from the pthread sizes, which the code searches past instead of assuming).
import { open } from 'node:fs/promises';

// fuse-native's fuse_thread_locals_t: self(8) op(4)+pad op_fn path dest linkname info buf
// offset len(8 each) mode(4)+pad dev(8) uid(4) gid(4) atime(8) mtime(8) res(4) ...
const LOCALS_OP = 8;
const LOCALS_ATIME = 104;
const LOCALS_MTIME = 112;

/**
 * The mtime fuse-native computed for the utimens request in flight, or undefined if the
 * locals buffer does not hold the expected op code and the atime JS was given.
 */
export function readUtimensMtime(locals: Buffer, opUtimens: number, atimeMs: number): number | undefined {
  if (locals.length < LOCALS_MTIME + 8) return undefined;
  if (locals.readUInt32LE(LOCALS_OP) !== opUtimens) return undefined;
  if (Number(locals.readBigUInt64LE(LOCALS_ATIME)) !== atimeMs) return undefined;
  return Number(locals.readBigUInt64LE(LOCALS_MTIME));
}

// struct fuse_config (libfuse 2.9 lib/fuse.c), offsets from its start.
const CONF_ENTRY_TIMEOUT = 16;
const CONF_NEGATIVE_TIMEOUT = 24;
const CONF_ATTR_TIMEOUT = 32;
const CONF_DEBUG = 60;
const CONF_USE_INO = 68;
const CONF_KERNEL_CACHE = 92;
const CONF_AUTO_CACHE = 96;
const CONF_INTR_SIGNAL = 104;
const CONF_SIZE = 120;
// struct fuse continues after conf: int intr_installed; struct fuse_fs *fs; int nullpath_ok;
// int utime_omit_ok; ...
const AFTER_CONF_FS = CONF_SIZE + 8;
const AFTER_CONF_NULLPATH_OK = CONF_SIZE + 16;
const AFTER_CONF_UTIME_OMIT_OK = CONF_SIZE + 20;
const SIGUSR1 = 10;

export interface ExpectedConf {
  entryTimeoutS: number;
  negativeTimeoutS: number;
  attrTimeoutS: number;
  debug: boolean;
  useIno: boolean;
  kernelCache: boolean;
  autoCache: boolean;
}

/**
 * Set libfuse's utime_omit_ok for a mounted file system. With it unset (fuse-native never sets
 * flag_utime_omit_ok) libfuse's setattr calls utimens only when atime and mtime are both being
 * set, so `touch -m -d` and `touch -a -d` silently change nothing. The struct fuse pointer is
 * found through fuse_thread_t (a JS Buffer fuse-native allocated), and struct fuse is
 * recognised by its config fields (timeouts, cache flags, SIGUSR1 as interrupt signal) before
 * one int is written through /proc/self/mem. Returns a reason when it did nothing.
 */
export async function enableUtimeOmit(thread: Buffer, mnt: string, optionString: string, conf: ExpectedConf): Promise<string | undefined> {
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) return `unsupported platform ${process.platform}-${process.arch}`;
  // fuse_thread_t: ... struct fuse *fuse; struct fuse_chan *ch; char mnt[1024]; char mntopts[1024]
  const mntAt = thread.indexOf(Buffer.from(mnt + '\0'));
  if (mntAt < 16 || thread.toString('latin1', mntAt + 1024, mntAt + 1024 + optionString.length) !== optionString) {
    return 'fuse_thread_t layout not recognised';
  }
  const fuseAddr = Number(thread.readBigUInt64LE(mntAt - 16));
  if (!fuseAddr) return 'no struct fuse pointer';

  const mem = await open('/proc/self/mem', 'r+');
  try {
    const probe = Buffer.alloc(512);
    await mem.read(probe, 0, probe.length, fuseAddr);
    const confAt = findConf(probe, conf);
    if (confAt === undefined) return 'struct fuse not recognised';
    const flagAddr = fuseAddr + confAt + AFTER_CONF_UTIME_OMIT_OK;
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    await mem.write(one, 0, 4, flagAddr);
    const check = Buffer.alloc(4);
    await mem.read(check, 0, 4, flagAddr);
    return check.readInt32LE() === 1 ? undefined : 'write to utime_omit_ok did not stick';
  } finally {
    await mem.close();
  }
}

// struct fuse starts with a pointer, two node tables, a list head, counters and a mutex: conf
// cannot begin before byte 64. Where exactly depends on the pthread_mutex_t size of the arch.
function findConf(b: Buffer, c: ExpectedConf): number | undefined {
  let found: number | undefined;
  for (let at = 64; at + AFTER_CONF_UTIME_OMIT_OK + 4 <= b.length; at += 8) {
    const ok =
      b.readDoubleLE(at + CONF_ENTRY_TIMEOUT) === c.entryTimeoutS &&
      b.readDoubleLE(at + CONF_NEGATIVE_TIMEOUT) === c.negativeTimeoutS &&
      b.readDoubleLE(at + CONF_ATTR_TIMEOUT) === c.attrTimeoutS &&
      b.readInt32LE(at + CONF_DEBUG) === Number(c.debug) &&
      b.readInt32LE(at + CONF_USE_INO) === Number(c.useIno) &&
      b.readInt32LE(at + CONF_KERNEL_CACHE) === Number(c.kernelCache) &&
      b.readInt32LE(at + CONF_AUTO_CACHE) === Number(c.autoCache) &&
      b.readInt32LE(at + CONF_INTR_SIGNAL) === SIGUSR1 &&
      b.readBigUInt64LE(at + AFTER_CONF_FS) !== 0n &&
      b.readInt32LE(at + AFTER_CONF_NULLPATH_OK) === 0 &&
      (b.readInt32LE(at + AFTER_CONF_UTIME_OMIT_OK) & ~1) === 0;
    if (!ok) continue;
    if (found !== undefined) return undefined; // ambiguous: touch nothing
    found = at;
  }
  return found;
}
