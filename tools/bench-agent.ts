// npm run bench:agent [-- --quick] [--images DIR] [--work DIR] [--no-warm]   (node dist/tools/bench-agent.js)
// Prints one JSON line per figure, {"figure","value","unit"}; notes go to stderr. The figures and
// their baselines are described in tools/bench/agent.ts. --images: where make-vm-images.sh put
// vm1-day1.raw, vm1-day2.raw and vm2-day1.raw (default $VMVAULT_BENCH_IMAGES, else /work/vmimages).
// Needs root: the agents run in a network namespace.
import { type AgentFigure, benchAgent } from './bench/agent.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const images = arg('--images') ?? process.env.VMVAULT_BENCH_IMAGES ?? '/work/vmimages';
const emit = (f: AgentFigure): void => void process.stdout.write(JSON.stringify(f) + '\n');
const note = (l: string): void => void process.stderr.write(`bench:agent: ${l}\n`);
await benchAgent({ quick: process.argv.includes('--quick'), images, work: arg('--work'), warm: !process.argv.includes('--no-warm'), emit, note });
