// Consistency checkers for a backed-up disk of the test guest (test/helpers/guest.ts), given as a
// raw image file: a file copied out of a snapshot, a path in the mount, or a `qemu-img convert`.
// They prove consistency rather than assume it, and each can fail (test/guest.test.ts shows it):
// - ext4Clean: the file system was frozen (or unmounted) when the copy was taken: ext4 clears
//   needs_recovery on freeze and sets it again on thaw, so a copy of a mounted, unfrozen file
//   system always carries it.
// - checkPostgres: the data directory, read out of the image without mounting it (debugfs), starts
//   with the host's PostgreSQL 15 (crash recovery, no backup_label), passes pg_amcheck
//   --heapallindexed and pg_checksums --check (the guest's cluster has data checksums), and
//   pgbench's invariant holds: sum(abalance) = sum(bbalance) = sum(tbalance).
// Nothing here mounts the image or changes it; everything started is stopped, even on failure.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runTool, type ToolResult } from './run-tool.js';

const PGBIN = '/usr/lib/postgresql/15/bin';

/** e2fsprogs opens a file system at a byte offset inside an image with `FILE?offset=N`. */
function at(rawPath: string, offset: number): string {
  return offset ? `${rawPath}?offset=${offset}` : rawPath;
}

function explain(r: ToolResult): string {
  return `${r.cmd}: exit ${r.code}${r.timedOut ? ' (timed out)' : ''}\n${r.stderr}${r.stdout}`.slice(0, 8000);
}

export interface Ext4State {
  /** No needs_recovery, and the superblock's state is "clean". */
  clean: boolean;
  needsRecovery: boolean;
  /** "clean", "not clean", "clean with errors", ... as dumpe2fs says. */
  state: string;
  features: string[];
  output: string;
}

/** The ext4 superblock of the file system at `offset` in a raw image (`dumpe2fs -h`). */
export async function ext4Clean(rawPath: string, offset = 0): Promise<Ext4State> {
  const r = await runTool('dumpe2fs', ['-h', at(rawPath, offset)], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`not a readable ext4 file system: ${explain(r)}`);
  const features = (/^Filesystem features:\s*(.*)$/m.exec(r.stdout)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const state = (/^Filesystem state:\s*(.*)$/m.exec(r.stdout)?.[1] ?? '').trim();
  const needsRecovery = features.includes('needs_recovery');
  return { clean: !needsRecovery && state === 'clean', needsRecovery, state, features, output: r.stdout };
}

/** `e2fsck -fn`: a full read-only check. ok when e2fsck found nothing to fix. */
export async function ext4Fsck(rawPath: string, offset = 0): Promise<{ ok: boolean; code: number | null; output: string }> {
  const r = await runTool('e2fsck', ['-f', '-n', at(rawPath, offset)], { timeoutMs: 300_000 });
  return { ok: r.code === 0, code: r.code, output: r.stdout + r.stderr };
}

export interface PgCheck {
  /** The server started on the copy (crash recovery done). */
  started: boolean;
  /** The server's log of that start (recovery lines), and of the checks. */
  log: string;
  amcheck: { ok: boolean; code: number | null; output: string } | null;
  checksums: { ok: boolean; badBlocks: number; blocksScanned: number; output: string } | null;
  balances: { accounts: number; branches: number; tellers: number; history: number } | null;
  /** sum(abalance) = sum(bbalance) = sum(tbalance). */
  invariantHolds: boolean;
  /** pgbench_accounts' main fork, relative to the data directory (e.g. base/5/16398). */
  accountsFile: string | null;
  /** Started, amcheck and checksums clean, invariant holds. */
  ok: boolean;
}

export interface PgCheckOptions {
  /** Byte offset of the ext4 file system in the image. */
  offset?: number;
  /** The data directory's path inside the file system; /pgdata in the test guest. */
  pgdata?: string;
  /** Keep the extracted data directory here instead of a temporary one removed at the end. */
  keepIn?: string;
  /** Per step; 300 s by default (crash recovery of a busy copy on a loaded machine). */
  timeoutMs?: number;
}

/**
 * Reads the PostgreSQL data directory out of a raw ext4 image and checks it with the host's
 * PostgreSQL 15 (run as user postgres). Throws only when the directory cannot be read out;
 * a server that does not start or a check that fails is in the result.
 */
export async function checkPostgres(rawPath: string, opts: PgCheckOptions = {}): Promise<PgCheck> {
  const pgdataIn = opts.pgdata ?? '/pgdata';
  const ms = opts.timeoutMs ?? 300_000;
  const work = opts.keepIn ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-pgcheck-'));
  fs.mkdirSync(work, { recursive: true });
  fs.chmodSync(work, 0o755); // user postgres must reach the data directory
  const dataDir = path.join(work, path.basename(pgdataIn));
  const sock = path.join(work, 'sock');
  const logFile = path.join(sock, 'server.log'); // a directory user postgres can write in
  let running = false;
  const asPg = (cmd: string, args: string[]) => runTool('runuser', ['-u', 'postgres', '--', `${PGBIN}/${cmd}`, ...args], { timeoutMs: ms });
  const result: PgCheck = { started: false, log: '', amcheck: null, checksums: null, balances: null, invariantHolds: false, accountsFile: null, ok: false };
  try {
    fs.rmSync(dataDir, { recursive: true, force: true });
    // -c: do not read the allocation bitmaps. A copy taken while mounted may not have them
    // consistent (that is what crash recovery is for), and rdump only follows inodes.
    const dump = await runTool('debugfs', ['-c', '-R', `rdump ${pgdataIn} ${work}`, at(rawPath, opts.offset ?? 0)], { timeoutMs: ms });
    if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) throw new Error(`no PostgreSQL data directory at ${pgdataIn} in ${rawPath}: ${explain(dump)}`);
    await runTool('chown', ['-R', 'postgres:postgres', dataDir]);
    fs.chmodSync(dataDir, 0o700);
    // The copy comes from a running server: its pid file would stop the start.
    fs.rmSync(path.join(dataDir, 'postmaster.pid'), { force: true });
    fs.rmSync(path.join(dataDir, 'postmaster.opts'), { force: true });
    fs.mkdirSync(sock, { mode: 0o700 });
    await runTool('chown', ['postgres:postgres', sock]);

    const start = await asPg('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', String(Math.ceil(ms / 1000)), '-o', `-c listen_addresses='' -c unix_socket_directories='${sock}' -p 5432`, 'start']);
    running = fs.existsSync(path.join(dataDir, 'postmaster.pid'));
    result.started = start.code === 0;
    if (!result.started) {
      result.log += explain(start);
      return result;
    }

    const conn = ['-h', sock, '-p', '5432', '-U', 'postgres'];
    const am = await asPg('pg_amcheck', [...conn, '--install-missing', '--heapallindexed', '--all']);
    result.amcheck = { ok: am.code === 0, code: am.code, output: am.stdout + am.stderr };

    const q = await asPg('psql', [
      ...conn, '-X', '-At', '-F', ' ', '-d', 'postgres', '-c',
      'select (select coalesce(sum(abalance), 0) from pgbench_accounts), (select coalesce(sum(bbalance), 0) from pgbench_branches), ' +
        "(select coalesce(sum(tbalance), 0) from pgbench_tellers), (select count(*) from pgbench_history), pg_relation_filepath('pgbench_accounts')",
    ]);
    if (q.code === 0) {
      const [a, b, t, h, file] = q.stdout.trim().split(' ');
      result.balances = { accounts: Number(a), branches: Number(b), tellers: Number(t), history: Number(h) };
      result.invariantHolds = result.balances.accounts === result.balances.branches && result.balances.branches === result.balances.tellers;
      result.accountsFile = file ?? null;
    } else {
      result.log += `pgbench tables: ${explain(q)}\n`;
    }

    const stop = await asPg('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', 'stop']);
    if (stop.code !== 0) throw new Error(`stopping the check's server: ${explain(stop)}`);
    running = false;

    // pg_checksums needs a cluster shut down cleanly: after the stop above.
    const ck = await asPg('pg_checksums', ['--check', '-D', dataDir]);
    const num = (re: RegExp) => Number(re.exec(ck.stdout)?.[1] ?? NaN);
    result.checksums = {
      ok: ck.code === 0,
      badBlocks: num(/Bad checksums:\s+(\d+)/),
      blocksScanned: num(/Blocks scanned:\s+(\d+)/),
      output: ck.stdout + ck.stderr,
    };
    result.ok = result.started && result.amcheck.ok && result.checksums.ok && result.checksums.badBlocks === 0 && result.invariantHolds;
    return result;
  } finally {
    if (running) await asPg('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
    try {
      result.log = fs.readFileSync(logFile, 'utf8') + result.log;
    } catch {
      // no server log: it never started
    }
    if (!opts.keepIn) fs.rmSync(work, { recursive: true, force: true });
  }
}
