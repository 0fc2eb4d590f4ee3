// node dist/tools/bench-segmenter.js [--quick]
// Prints one JSON line per figure: {"figure":..., "value":..., "unit":...}.
import { benchSegmenter } from './bench/segmenter.js';

const figures = await benchSegmenter({ quick: process.argv.includes('--quick') });
for (const f of figures) process.stdout.write(JSON.stringify(f) + '\n');
