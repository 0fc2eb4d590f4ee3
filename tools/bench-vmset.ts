// npm run bench:vmset -- DIR [--store=PATH] [--no-mount] [--no-doors]   (node dist/tools/bench-vmset.js)
// Prints one JSON line per figure: {"figure":..., "value":..., "unit":...}. Without --store the
// store goes to a temporary directory, removed afterwards.
import { benchVmset } from './bench/store-vmset.js';
import type { Figure } from './bench/store-io.js';

const args = process.argv.slice(2);
const dir = args.find((a) => !a.startsWith('--'));
if (!dir) {
  process.stderr.write('usage: npm run bench:vmset -- DIR [--store=PATH]\n');
  process.exit(2);
}
const storeDir = args.find((a) => a.startsWith('--store='))?.slice('--store='.length);
const emit = (f: Figure): void => void process.stdout.write(JSON.stringify(f) + '\n');
await benchVmset({ dir, ...(storeDir ? { storeDir } : {}), mount: !args.includes('--no-mount'), doors: !args.includes('--no-doors'), emit });
