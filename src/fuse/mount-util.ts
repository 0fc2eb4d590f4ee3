// Finding, probing and clearing FUSE mounts from outside the file system. Everything touching a
// mount point runs in a child process (stat, umount, fusermount): the process calling these may
// itself serve a mount, and a synchronous call into its own mount, or a stat of a hung mount on
// a libuv pool thread, never returns.
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { vmError } from '../errors.js';

const FUSECTL = '/sys/fs/fuse/connections';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  /** Device minor: the FUSE connection number under /sys/fs/fuse/connections. */
  minor: number;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  missing: boolean;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((done) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { killed?: boolean; code?: unknown }) | null;
      done({
        code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
        stdout: String(stdout),
        stderr: String(stderr),
        timedOut: Boolean(e?.killed),
        missing: e?.code === 'ENOENT',
      });
    });
    child.stdin?.end();
  });
}

// mountinfo escapes space, tab, newline and backslash as octal.
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The FUSE mounts (type fuse, fuse.*, fuseblk) in this process's mount namespace. */
export async function fuseMounts(): Promise<MountEntry[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const f = left.split(' ');
    const [fsType = '', source = ''] = right.split(' ');
    if (fsType !== 'fuse' && fsType !== 'fuseblk' && !fsType.startsWith('fuse.')) continue;
    const minor = Number((f[2] ?? '').split(':')[1]);
    out.push({ mountPoint: unescape(f[4] ?? ''), fsType, source: unescape(source), minor });
  }
  return out;
}

/** FUSE mounts at exactly `path`, the most recent (topmost) last. */
export async function fuseMountsAt(path: string): Promise<MountEntry[]> {
  const p = resolve(path);
  return (await fuseMounts()).filter((m) => m.mountPoint === p);
}

export type MountState = 'none' | 'healthy' | 'stale' | 'hung';

/**
 * What is at `path`: no FUSE mount; one that answers; a stale one whose server is gone (stat
 * fails with ENOTCONN); or a hung one whose server lives but does not answer within timeoutMs.
 */
export async function probeMount(path: string, timeoutMs = 3000): Promise<MountState> {
  if ((await fuseMountsAt(path)).length === 0) return 'none';
  // A name nobody has looked up: the kernel must ask the server. Stat of the mount point itself
  // can be answered from cached attributes even after the server died.
  const probe = join(resolve(path), `.vmvault-probe-${randomBytes(6).toString('hex')}`);
  const r = await run('stat', ['-c', '%i', probe], timeoutMs);
  if (r.timedOut) return 'hung';
  if (/Transport endpoint is not connected/.test(r.stderr)) return 'stale';
  return 'healthy';
}

/** Mount fusectl if this kernel has it but nobody mounted it (root only). */
async function ensureFusectl(): Promise<boolean> {
  try {
    await readdir(FUSECTL);
  } catch {
    return false;
  }
  if ((await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${FUSECTL} `)) return true;
  if (process.getuid?.() !== 0) return false;
  const r = await run('mount', ['-t', 'fusectl', 'fusectl', FUSECTL], 10_000);
  return r.code === 0;
}

/**
 * Abort a FUSE connection: every request in flight and to come fails with ENOTCONN, so
 * processes stuck in the mount wake up. Returns false if fusectl is not available.
 */
export async function abortConnection(minor: number): Promise<boolean> {
  if (!(await ensureFusectl())) return false;
  try {
    await writeFile(`${FUSECTL}/${minor}/abort`, '1');
    return true;
  } catch (err) {
    // Already gone with its server: nothing to abort.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

const isRoot = () => process.getuid?.() === 0;

/**
 * One unmount attempt. Root uses umount(8), which needs no fusermount helper; others need
 * fusermount3 (Debian's fuse3), or the fusermount of Debian's fuse 2.9 where that is installed
 * instead (same command line).
 */
async function unmountOnce(path: string, lazy: boolean, timeoutMs: number): Promise<RunResult> {
  const umount: [string, string[]] = ['umount', lazy ? ['-l', path] : [path]];
  const helpers: Array<[string, string[]]> = [
    ['fusermount3', [lazy ? '-uz' : '-u', path]],
    ['fusermount', [lazy ? '-uz' : '-u', path]],
  ];
  const tries = isRoot() ? [umount, ...helpers] : [...helpers, umount];
  let last: RunResult | undefined;
  for (const [cmd, args] of tries) {
    last = await run(cmd, args, timeoutMs);
    if (last.code === 0 || !last.missing) return last;
  }
  return last!;
}

export interface UnmountResult {
  /** 'graceful': nothing was using it; 'lazy': detached while in use; 'none': was not mounted. */
  how: 'graceful' | 'lazy' | 'none';
}

/**
 * Unmount the FUSE mount at `path`: gracefully, and if it is busy or does not answer, lazily
 * (detached now, released when the last user lets go). Throws only if it stays mounted.
 */
export async function unmountFuse(path: string, opts: { timeoutMs?: number } = {}): Promise<UnmountResult> {
  const p = resolve(path);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  if ((await fuseMountsAt(p)).length === 0) return { how: 'none' };
  const graceful = await unmountOnce(p, false, timeoutMs);
  if (graceful.code === 0 && (await fuseMountsAt(p)).length === 0) return { how: 'graceful' };
  await unmountOnce(p, true, timeoutMs);
  const left = await fuseMountsAt(p);
  if (left.length === 0) return { how: 'lazy' };
  throw new Error(`could not unmount ${p}: ${graceful.stderr.trim() || 'still mounted after lazy unmount'}`);
}

/**
 * Clear every FUSE mount at `path` whatever its state: abort the connection (so nothing waits
 * on a server that is gone or stuck) and detach it lazily. Returns how many were cleared.
 * Also what tests use to leave nothing behind.
 */
export async function clearFuseMount(path: string, opts: { timeoutMs?: number } = {}): Promise<number> {
  const p = resolve(path);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  let cleared = 0;
  for (let mounts = await fuseMountsAt(p); mounts.length > 0; mounts = await fuseMountsAt(p)) {
    const top = mounts[mounts.length - 1]!;
    await abortConnection(top.minor);
    const r = await unmountOnce(p, true, timeoutMs);
    if (r.code !== 0 && (await fuseMountsAt(p)).length === mounts.length) {
      throw new Error(`could not clear the FUSE mount at ${p}: ${r.stderr.trim()}`);
    }
    cleared++;
  }
  return cleared;
}

/**
 * Clear a stale mount (server gone) at `path` so it can be mounted again. A mount that answers
 * or hangs belongs to a live process and is left alone: that is an error for the caller.
 */
export async function clearStaleMount(path: string, opts: { timeoutMs?: number } = {}): Promise<MountState> {
  const state = await probeMount(path, opts.timeoutMs);
  if (state === 'stale') await clearFuseMount(path, opts);
  return state;
}

/**
 * Makes `path` ready for a mount of ours, for both bindings: a stale mount is cleared; a live
 * one (answering or hung: another process serves it) is a CONFLICT error and left exactly as
 * it was; then the directory is made (with `mkdir`) and must be one. The in-process mkdir and
 * stat are safe here: nothing of ours is mounted at the path yet, and a stale mount that would
 * make them fail with ENOTCONN is gone.
 */
export async function prepareMountPoint(path: string, opts: { mkdir?: boolean } = {}): Promise<void> {
  const found = await clearStaleMount(path);
  if (found === 'healthy' || found === 'hung') {
    throw vmError(
      'CONFLICT',
      `${path} is already in use: another FUSE file system (another vmvault appliance?) is mounted there and ${found === 'healthy' ? 'answering' : 'not answering'}; stop that one or choose another mount point (--mount); it was left alone`,
      { mount: path, state: found },
    );
  }
  if (opts.mkdir) await mkdir(path, { recursive: true });
  if (!(await stat(path)).isDirectory()) throw new Error(`${path}: mount point is not a directory`);
}
