// npm run bench:store [-- --quick]   (node dist/tools/bench-store.js)
// Prints one JSON line per figure: {"figure":..., "value":..., "unit":..., "vs_blake3":...};
// notes on the run go to stderr. --quick runs smaller inputs (under a minute).
import { benchStore } from './bench/store.js';
import { benchScale } from './bench/store-scale.js';
import type { Figure } from './bench/store-io.js';

const quick = process.argv.includes('--quick');
const emit = (f: Figure): void => void process.stdout.write(JSON.stringify(f) + '\n');
if (process.argv.includes('--scale-child')) await benchScale({ quick, emit });
else await benchStore({ quick, emit });
