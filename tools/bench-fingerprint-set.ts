// node --expose-gc dist/tools/bench-fingerprint-set.js [-- --n N]   (npm run bench:fpset)
// The replication tokens' segment scope (src/control/replicas.ts): memory and lookup time of N
// fingerprints held as a Set of hex strings (before) and as a FingerprintSet (after), measured
// in the same run, alternating, after a forced GC (heap + external bytes), best of 3.
// One JSON line per figure on stdout ({"figure", "value", "unit"}); a summary on stderr.

import { randomBytes } from 'node:crypto';
import { FingerprintSet } from '../src/control/fingerprint-set.js';

const args = process.argv.slice(2);
const n = Number(args.includes('--n') ? args[args.indexOf('--n') + 1] : 1_000_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const used = () => {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external; // external includes arrayBuffers
};

// The fingerprints, as the tree walk hands them out (one Buffer each, not counted in either).
const fps: Buffer[] = [];
const pool = randomBytes(32 * n);
for (let i = 0; i < n; i++) fps.push(pool.subarray(i * 32, i * 32 + 32));
const probes = fps.map((fp, i) => (i % 2 === 0 ? fp : randomBytes(32)));

function measure(kind: 'hex' | 'binary'): { bytes: number; lookupMs: number; hits: number } {
  const before = used();
  let held: Set<string> | FingerprintSet;
  if (kind === 'hex') {
    const s = new Set<string>();
    for (const fp of fps) s.add(fp.toString('hex'));
    held = s;
  } else {
    const s = new FingerprintSet();
    for (const fp of fps) s.add(fp);
    held = s;
  }
  const bytes = used() - before;
  // Lookups as grantedTo makes them: from the request's hex strings.
  const hexes = probes.map((p) => p.toString('hex'));
  const t = performance.now();
  let hits = 0;
  if (held instanceof Set) for (const h of hexes) hits += held.has(h) ? 1 : 0;
  else for (const h of hexes) hits += held.has(Buffer.from(h, 'hex')) ? 1 : 0;
  return { bytes, lookupMs: performance.now() - t, hits };
}

const runs: Record<string, Array<{ bytes: number; lookupMs: number; hits: number }>> = { hex: [], binary: [] };
for (let r = 0; r < 3; r++) for (const k of ['hex', 'binary'] as const) runs[k]!.push(measure(k));
const best = (k: string, f: 'bytes' | 'lookupMs') => Math.min(...runs[k]!.map((x) => x[f]));
if (runs.hex![0]!.hits !== runs.binary![0]!.hits) throw new Error('the two answer differently');
process.stderr.write(`${n} fingerprints: hex Set ${(best('hex', 'bytes') / n).toFixed(1)} B each, ${best('hex', 'lookupMs').toFixed(0)} ms for ${n} lookups; FingerprintSet ${(best('binary', 'bytes') / n).toFixed(1)} B each, ${best('binary', 'lookupMs').toFixed(0)} ms\n`);
const emit = (figure: string, value: number, unit: string) => process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 1000) / 1000, unit }) + '\n');
emit('fpset.bytes_per_fp.hex_set', best('hex', 'bytes') / n, 'B');
emit('fpset.bytes_per_fp.binary', best('binary', 'bytes') / n, 'B');
emit('fpset.memory_vs_hex_set', best('binary', 'bytes') / best('hex', 'bytes'), 'ratio');
emit('fpset.lookup_time_vs_hex_set', best('binary', 'lookupMs') / best('hex', 'lookupMs'), 'ratio');
