// node dist/tools/bench-fuse-ceiling.js [--quick] [--dir=PATH] [--no-big-writes]
// Prints one JSON line per figure: {"figure":..., "value":..., "unit":...}.
// --no-big-writes measures the 4 KiB-write ceiling libfuse gives without big_writes, for comparison.
import { benchFuseCeiling } from './bench/fuse-ceiling.js';
import { benchFuseCeilingLl } from './bench/fuse-ceiling-ll.js';

const args = process.argv.slice(2);
const dir = args.find((a) => a.startsWith('--dir='))?.slice('--dir='.length);
// The libfuse3 binding's ceiling (fuse.ceiling.*) first, then fuse-native's (fuse.ceiling_old.*).
const figures = args.includes('--no-big-writes') ? [] : await benchFuseCeilingLl({ quick: args.includes('--quick'), ...(dir ? { dir } : {}) });
figures.push(...await benchFuseCeiling({
  quick: args.includes('--quick'),
  bigWrites: !args.includes('--no-big-writes'),
  ...(dir ? { dir } : {}),
}));
for (const f of figures) process.stdout.write(JSON.stringify(f) + '\n');
