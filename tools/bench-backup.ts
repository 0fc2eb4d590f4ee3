// npm run bench:backup [-- --quick] [--images DIR] [--work DIR] [--connections N] [--no-freeze]   (node dist/tools/bench-backup.js)
// Prints one JSON line per figure, {"figure","value","unit"}; notes go to stderr. The figures and
// their baselines are described in tools/bench/backup.ts. --images: where make-vm-images.sh put
// vm1-day1.raw and vm1-day2.raw (default $VMVAULT_BENCH_IMAGES, else /var/tmp/vmvault-bench/vm-images).
import type { BackupFigure } from './bench/backup.js';

// The backup runs in this process (store, namespace and BackupService as the appliance composes
// them), so this process sets the appliance's V8 flags (bin/v8-flags.js) as `vmvault appliance`
// does, before the code they are for is loaded: exactly what the shipped appliance runs with.
const { applyV8Flags } = (await import(new URL('../../bin/v8-flags.js', import.meta.url).href)) as { applyV8Flags(): string[] };
process.stderr.write(`bench:backup: V8 flags of the appliance: ${applyV8Flags().join(' ') || 'none'}\n`);
const { benchBackup } = await import('./bench/backup.js');

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
