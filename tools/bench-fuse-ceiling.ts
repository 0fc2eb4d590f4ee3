// node dist/tools/bench-fuse-ceiling.js [--quick] [--dir=PATH]
// Prints one JSON line per figure: {"figure":..., "value":..., "unit":...}: the libfuse3
// binding's do-nothing ceiling (fuse.ceiling.*), then fuse-native's last recorded one
// (fuse.ceiling_old.*, marked "historic": fuse-native was removed in issue 16).
import { ceilingOldFigures } from './bench/fuse-ceiling-old.js';
import { benchFuseCeilingLl } from './bench/fuse-ceiling-ll.js';

const args = process.argv.slice(2);
const dir = args.find((a) => a.startsWith('--dir='))?.slice('--dir='.length);
const figures = [...(await benchFuseCeilingLl({ quick: args.includes('--quick'), ...(dir ? { dir } : {}) })), ...ceilingOldFigures()];
for (const f of figures) process.stdout.write(JSON.stringify(f) + '\n');
