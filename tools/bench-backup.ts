// npm run bench:backup [-- --quick] [--images DIR] [--work DIR] [--connections N] [--no-freeze] [--profile DIR]   (node dist/tools/bench-backup.js)
// Prints one JSON line per figure, {"figure","value","unit"}; notes go to stderr. The figures and
// their baselines are described in tools/bench/backup.ts. --images: where make-vm-images.sh put
// vm1-day1.raw and vm1-day2.raw (default $VMVAULT_BENCH_IMAGES, else /var/tmp/vmvault-bench/vm-images).
// backup.full.vs_store is cold against cold: the full backup is this process's first work, the
// store's ingest the first work of a fresh child process (both sources pre-read into the page
// cache); the .warm figures compare a second backup with the child's second ingest. The note
// "old definition" gives vs_store as measured before (the ingest after the backup, in this process).
// --profile DIR: CPU profiles of the main thread (.cpuprofile) of the cold and warm full backups
// and of the child's cold and warm ingests, to see what a process's first run pays.
// --help prints the figures' definitions.
// (Internal: --ingest-child FILE DIR ROUNDS [PROFILE_DIR] is the child the baseline runs in.)
import { type BackupFigure, benchBackup, ingestChild } from './bench/backup.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const help = `npm run bench:backup [-- --quick] [--images DIR] [--work DIR] [--connections N] [--no-freeze] [--profile DIR]
Issue 11's figures, one JSON line each on stdout; notes on stderr.
  backup.full.vs_store        the store's ingest of the same bytes from a file (bench:store's ingestFile) /
                              the full backup's time; goal >= 0.8. Cold against cold: the backup is this
                              process's first work, the ingest the first work of a fresh child process;
                              both sources pre-read into the page cache, dirty pages synced before each.
                              (The note "old definition" gives it with the ingest run after the backup in
                              this process, warm, as measured until benchfair.)
  backup.full.warm.vs_store   a second full backup (fresh store, second QEMU) against the child's second
                              ingest (fresh store): warm against warm. Also .warm.vs_convert,
                              .warm.main_cpu_s_per_gib
  backup.full.vs_convert      qemu-img convert of the disk into a fresh child appliance's mount / full time
  backup.incremental.read_vs_dirty, backup.incremental.vs_full (against the cold full; goal <= 0.1),
  backup.incremental.vs_full.warm (extra: against the warm full), backup.rss_mib,
  backup.full.main_cpu_s_per_gib, restore.vs_convert, backup.freeze_ms.median/.max
The figures are described in full in tools/bench/backup.ts and tools/PERFORMANCE.md ("VM backup").
--profile DIR: main-thread CPU profiles of the cold and warm full backups and ingests.`;

const child = process.argv.indexOf('--ingest-child');
if (process.argv.includes('--help')) {
  process.stdout.write(help + '\n');
} else if (child >= 0) {
  const [file, dir, rounds, profileDir] = process.argv.slice(child + 1);
  await ingestChild(file, dir, Number(rounds), profileDir);
} else {
  const quick = process.argv.includes('--quick');
  const images = arg('--images') ?? process.env.VMVAULT_BENCH_IMAGES ?? '/var/tmp/vmvault-bench/vm-images';
  const emit = (f: BackupFigure): void => void process.stdout.write(JSON.stringify(f) + '\n');
  const note = (l: string): void => void process.stderr.write(`bench:backup: ${l}\n`);
  const connections = arg('--connections') === undefined ? undefined : Number(arg('--connections'));
  await benchBackup({ quick, images, work: arg('--work'), connections, noFreeze: process.argv.includes('--no-freeze'), profileDir: arg('--profile'), emit, note });
}
