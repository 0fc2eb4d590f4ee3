// Loading fuse-native, and the subclass that corrects what it gets wrong. Only this file and
// native-layout.ts know fuse-native's internals (private method names, handler array, struct
// layouts), all of version 2.2.6, which package.json pins.
//
// libfuse: fuse-native's prebuilt addon links libfuse.so.2 by name. The system's (Debian
// libfuse2) is used when present; otherwise the copy fuse-native ships next to the addon is
// loaded first, so the dynamic linker finds a libfuse.so.2 already in the process.
// VMVAULT_LIBFUSE=bundled forces the shipped copy.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { readUtimensMtime } from './native-layout.js';

const require = createRequire(import.meta.url);

/** What fuse-native passes back to C: (result, ...payload). */
export type Signal = (res: number, ...payload: unknown[]) => void;

export interface NativeFuse {
  readonly mnt: string;
  /** fuse_thread_t, allocated by fuse-native in JS memory when mounting. */
  readonly _thread: Buffer | null;
  _handlers: Array<((nativeLocals: Buffer, op: number, ...args: unknown[]) => unknown) | undefined>;
  mount(cb: (err: Error | null) => void): void;
  close(cb: (err: Error | null) => void): void;
}

export type Dispatch = (op: string, signal: Signal, args: unknown[]) => void;

export interface NativeFuseCtor {
  new (mnt: string, implemented: Record<string, boolean>, optionString: string, dispatch: Dispatch): NativeFuse;
}

interface FuseNativeBinding {
  op_utimens: number;
  fuse_native_unmount(mnt: string, thread: Buffer): void;
}

// fuse-native's _op_<name> methods; ours replace every one a handler can implement.
export const NATIVE_OPS = [
  'access', 'statfs', 'fgetattr', 'getattr', 'flush', 'fsync', 'fsyncdir', 'readdir',
  'truncate', 'ftruncate', 'utimens', 'readlink', 'chown', 'chmod', 'mknod', 'setxattr',
  'getxattr', 'listxattr', 'removexattr', 'open', 'read', 'write', 'release', 'create',
  'unlink', 'rename', 'link', 'symlink', 'mkdir', 'rmdir',
] as const;

// glibc's RTLD_NODELETE: os.constants.dlopen does not list it. It keeps the library mapped
// after Node's dlopen gives up on it for not being an addon.
const RTLD_NODELETE = 0x1000;

let warnedLayout = false;
let loaded: { ctor: NativeFuseCtor; binding: FuseNativeBinding; libfuse: 'system' | 'bundled' } | undefined;

function bundledLibfuse(): string {
  const fuseDir = dirname(require.resolve('fuse-native/package.json'));
  const candidates = [
    join(fuseDir, 'prebuilds', `linux-${process.arch}`, 'libfuse.so'),
    join(dirname(createRequire(join(fuseDir, 'index.js')).resolve('fuse-shared-library-linux/package.json')), 'libfuse/lib/libfuse.so'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no libfuse.so.2 on this system and none shipped with fuse-native (looked at ${candidates.join(', ')}); install libfuse2`);
  return found;
}

function preloadBundled(): void {
  const lib = bundledLibfuse();
  const d = constants.dlopen;
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, lib, d.RTLD_NOW | d.RTLD_GLOBAL | RTLD_NODELETE);
  } catch (err) {
    // Expected: a plain library never registers as an addon, but it stays loaded.
    if (!/did not self-register/.test((err as Error).message)) throw err;
  }
}

function loadFuseNative(): { base: new (...a: unknown[]) => object; libfuse: 'system' | 'bundled' } {
  if (process.env.VMVAULT_LIBFUSE !== 'bundled') {
    try {
      return { base: require('fuse-native'), libfuse: 'system' };
    } catch (err) {
      if (!/libfuse\.so\.2/.test((err as Error).message)) throw err;
    }
  }
  preloadBundled();
  return { base: require('fuse-native'), libfuse: 'bundled' };
}

/** The patched fuse-native class, loading libfuse on first use. */
export function nativeFuse(): { ctor: NativeFuseCtor; binding: FuseNativeBinding; libfuse: 'system' | 'bundled' } {
  if (loaded) return loaded;
  const { base, libfuse } = loadFuseNative();
  const fuseDir = dirname(require.resolve('fuse-native/package.json'));
  // The same addon instance fuse-native holds: node-gyp-build requires it by file name.
  const binding = createRequire(join(fuseDir, 'index.js'))('node-gyp-build')(fuseDir) as FuseNativeBinding;

  class PatchedFuse extends (base as new (mnt: string, ops: object, opts: object) => NativeFuse) {
    private readonly vmOptionString: string;
    readonly vmDispatch: Dispatch;

    constructor(mnt: string, implemented: Record<string, boolean>, optionString: string, dispatch: Dispatch) {
      // timeout:false: the adapter keeps its own per-operation deadlines, which log.
      super(mnt, implemented, { timeout: false });
      this.vmOptionString = optionString;
      this.vmDispatch = dispatch;
      this.patchUtimens();
    }

    // fuse-native's list has no big_writes/max_write; the adapter builds the whole string.
    _fuseOptions(): string {
      return this.vmOptionString;
    }

    // fuse-native's C side reads both times from libfuse but hands JS the atime twice
    // (FUSE_UINT64_TO_INTS_ARGV(l->atime, 5) where l->mtime was meant). The mtime it computed is
    // still in its per-thread locals, which live in a JS Buffer passed as the handler's first
    // argument: read it from there and put it where the mtime arguments belong.
    private patchUtimens(): void {
      const op = binding.op_utimens;
      const inner = this._handlers[op];
      if (!inner) return;
      this._handlers[op] = (locals: Buffer, opCode: number, ...args: unknown[]) => {
        const atime = (args[1] as number) + (args[2] as number) * 4294967296;
        const mtime = readUtimensMtime(locals, op, atime);
        if (mtime !== undefined) {
          args[3] = mtime % 4294967296;
          args[4] = Math.floor(mtime / 4294967296);
        } else if (!warnedLayout) {
          warnedLayout = true;
          process.emitWarning('fuse-native utimens locals not recognised: mtime will be set to atime', 'VmvaultFuseWarning');
        }
        return inner(locals, opCode, ...args);
      };
    }
  }
  for (const name of NATIVE_OPS) {
    Object.defineProperty(PatchedFuse.prototype, `_op_${name}`, {
      value: function (this: PatchedFuse, signal: Signal, ...args: unknown[]) {
        this.vmDispatch(name, signal, args);
      },
      writable: true,
      configurable: true,
    });
  }
  loaded = { ctor: PatchedFuse as unknown as NativeFuseCtor, binding, libfuse };
  return loaded;
}
