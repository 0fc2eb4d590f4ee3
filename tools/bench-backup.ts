// npm run bench:backup [-- --quick] [--images DIR] [--work DIR] [--connections N] [--no-freeze]   (node dist/tools/bench-backup.js)
// Prints one JSON line per figure, {"figure","value","unit"}; notes go to stderr. The figures and
// their baselines are described in tools/bench/backup.ts. --images: where make-vm-images.sh put
// vm1-day1.raw and vm1-day2.raw (default $VMVAULT_BENCH_IMAGES, else /var/tmp/vmvault-bench/vm-images).
import { type BackupFigure, benchBackup } from './bench/backup.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const quick = process.argv.includes('--quick');
const images = arg('--images') ?? process.env.VMVAULT_BENCH_IMAGES ?? '/var/tmp/vmvault-bench/vm-images';
const emit = (f: BackupFigure): void => void process.stdout.write(JSON.stringify(f) + '\n');
const note = (l: string): void => void process.stderr.write(`bench:backup: ${l}\n`);
const connections = arg('--connections') === undefined ? undefined : Number(arg('--connections'));
await benchBackup({ quick, images, work: arg('--work'), connections, noFreeze: process.argv.includes('--no-freeze'), emit, note });
