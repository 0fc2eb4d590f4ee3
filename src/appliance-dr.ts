// The disaster-recovery copy in the composition root (issue 14): the DR copy job over the
// store's consistent snapshot (store/copy-snapshot.ts) and the data directory's state files, and
// `vmvault dr restore|verify`, which run without an appliance (bin/vmvault.js sends them here, as
// it sends `vmvault appliance` to appliance.ts): a DR copy must rebuild a machine that has none.

import path from 'node:path';
import { VERSION } from './appliance-services.js';
import { exitCodeFor } from './cli/exit-codes.js';
import type { DrControl } from './control/routes/dr.js';
import { isVmvaultError } from './errors.js';
import { drCopy } from './policy/dr-copy.js';
import { drRestore } from './policy/dr-restore.js';
import { describeProblems, drVerify } from './policy/dr-verify.js';
import { type SegmentStore, writeDatabase } from './store/store.js';

export function drControl(o: { data: string; store: SegmentStore; mount?: string; resolve?: (to: string) => string }): DrControl {
  return {
    resolve: (to) => (path.isAbsolute(to) ? path.resolve(to) : o.resolve ? o.resolve(to) : to),
    copy: (ctx, to) =>
      drCopy({
        dataDir: o.data,
        to,
        snapshot: () => o.store.snapshotForCopy(),
        version: VERSION,
        forbidden: o.mount === undefined ? [] : [{ path: path.resolve(o.mount), what: 'mount' }],
        signal: ctx.signal,
        progress: (done, total, phase) => ctx.progress(done, total, 'bytes', phase),
        log: (l) => ctx.log(l),
      }),
  };
}

const USAGE = `usage: vmvault dr <command> (runs here, without an appliance)
  dr verify --from <dir> [--json]         check a DR copy: the manifest and every file's checksum
  dr restore --from <dir> --data <newdir> [--json]
                                          rebuild a data directory from a DR copy alone (verified
                                          first; <newdir> must be missing or empty), then start
                                          the appliance on it: vmvault appliance --data <newdir> ...
(dr copy --to <dir> asks the running appliance for a copy: a job, like gc)`;

function parse(argv: string[]): { cmd: string; flags: Map<string, string | true> } {
  const [cmd = '', ...rest] = argv;
  const flags = new Map<string, string | true>();
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
    const name = a.slice(2);
    if (name === 'json' || name === 'help') flags.set(name, true);
    else {
      const v = rest[++i];
      if (v === undefined) throw new Error(`--${name} needs a value`);
      flags.set(name, v);
    }
  }
  return { cmd, flags };
}

/** `vmvault dr ...` without the `dr`. Returns the exit code (cli/exit-codes.ts). */
export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s), err: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  let p: ReturnType<typeof parse>;
  try {
    p = parse(argv);
  } catch (e) {
    err(`vmvault dr: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const known: Record<string, string[]> = { verify: ['from', 'json'], restore: ['from', 'data', 'json'] };
  if (p.flags.has('help') || !(p.cmd in known)) {
    (p.flags.has('help') ? out : err)(USAGE + '\n');
    return p.flags.has('help') ? 0 : 2;
  }
  for (const f of p.flags.keys()) {
    if (!known[p.cmd].includes(f)) {
      err(`vmvault dr ${p.cmd}: unknown option --${f}\n${USAGE}\n`);
      return 2;
    }
  }
  const from = p.flags.get('from');
  if (typeof from !== 'string') {
    err(`vmvault dr ${p.cmd}: --from <dir> is required\n`);
    return 2;
  }
  const json = p.flags.has('json');
  try {
    if (p.cmd === 'verify') {
      const { report } = await drVerify(path.resolve(from));
      if (json) out(JSON.stringify(report) + '\n');
      else {
        out(`DR copy ${report.copy} in ${report.from}: checkpoint ${report.takenAt}, ${report.containers} containers, ${report.files} state files, ${report.bytesChecked} bytes checked\n`);
        for (const l of describeProblems(report)) out(`DAMAGED ${l}\n`);
        out(report.problems.length === 0 ? 'ok: every file matches the manifest\n' : `${report.problems.length} problem(s): this copy cannot be restored as it is\n`);
      }
      return report.problems.length === 0 ? 0 : exitCodeFor('CORRUPT_COPY');
    }
    const data = p.flags.get('data');
    if (typeof data !== 'string') {
      err('vmvault dr restore: --data <newdir> is required\n');
      return 2;
    }
    let last = 0;
    const r = await drRestore({
      from,
      data,
      writeDatabase,
      progress: (done, total, phase) => {
        const now = Date.now();
        if (!json && process.stderr.isTTY && now - last > 250) {
          last = now;
          err(`\r${phase}: ${total > 0 ? Math.floor((done / total) * 100) : 0}%   `);
        }
      },
    });
    if (!json && process.stderr.isTTY) err('\n');
    if (json) out(JSON.stringify(r) + '\n');
    else out(`restored DR copy ${r.copy} (checkpoint ${r.takenAt}) into ${r.data}: ${r.containers} containers, ${r.files} state files, ${r.databaseRecords} database records\nstart it with: vmvault appliance --data ${r.data} --mount <dir>\n`);
    return 0;
  } catch (e) {
    const code = isVmvaultError(e) ? e.code : 'IO';
    err(`vmvault dr ${p.cmd}: ${(e as Error).message}\n`);
    return exitCodeFor(code);
  }
}
