// npm run bench:agent [-- --quick] [--images DIR] [--work DIR] [--no-warm]   (node dist/tools/bench-agent.js)
// Prints one JSON line per figure, {"figure","value","unit"}; notes go to stderr. The figures and
// their baselines are described in tools/bench/agent.ts. --images: where make-vm-images.sh put
// vm1-day1.raw, vm1-day2.raw and vm2-day1.raw (default $VMVAULT_BENCH_IMAGES, else /work/vmimages).
// Needs root: the agents run in a network namespace. --help prints the figures' definitions.
import { type AgentFigure, benchAgent } from './bench/agent.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const help = `npm run bench:agent [-- --quick] [--images DIR] [--work DIR] [--no-warm]   (root: network namespaces, tc)
Issue 12's figures, one JSON line each on stdout; notes on stderr.
  agent.local.vs_internal       the appliance's own copy of vm1 day 1 (time) / the same by one agent (time);
                                goal >= 0.9. Cold against cold in the same state: each side a fresh appliance
                                (and a fresh agent), a fresh QEMU of its own on its own qcow2, the qcow2
                                pre-read into the page cache and synced, internal first. (The note "old
                                definition" gives it with the internal copy as until benchfair: right after
                                its qcow2 was written, the agent then reading the QEMU it had used.)
  agent.local.vs_internal.warm  the same with each side's processes warmed by a 256 MiB backup of other
                                content first (extra; --no-warm leaves it out)
  agent.day2.wire_vs_new, agent.fingerprint_bytes_per_gib, agent.wan.speedup_vs_raw, agent.two.vs_one,
  agent.rss_mib
The figures are described in full in tools/bench/agent.ts and tools/PERFORMANCE.md ("Agents").`;
if (process.argv.includes('--help')) {
  process.stdout.write(help + '\n');
  process.exit(0);
}

const images = arg('--images') ?? process.env.VMVAULT_BENCH_IMAGES ?? '/work/vmimages';
const emit = (f: AgentFigure): void => void process.stdout.write(JSON.stringify(f) + '\n');
const note = (l: string): void => void process.stderr.write(`bench:agent: ${l}\n`);
await benchAgent({ quick: process.argv.includes('--quick'), images, work: arg('--work'), warm: !process.argv.includes('--no-warm'), emit, note });
