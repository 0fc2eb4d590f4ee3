// Where an appliance process spent its CPU: a summary of the .cpuprofile files `node --cpu-prof`
// writes (one per thread: the main thread serving FUSE, and the store's codec workers), as
// self time per area of the code and the functions that cost the most.

import fs from 'node:fs/promises';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ThreadSummary {
  file: string;
  /** Wall time the profile covers, ms. */
  wallMs: number;
  /** ms of self time per area, busiest first (idle included). */
  areas: Array<[string, number]>;
  /** The functions with the most self time: [name at file:line, ms]. */
  top: Array<[string, number]>;
}

/** The area of the code a frame belongs to. */
function area(cf: ProfileNode['callFrame']): string {
  const f = cf.functionName;
  const u = cf.url;
  if (f === '(garbage collector)') return 'gc';
  if (f === '(idle)') return 'idle';
  if (f === '(program)') return 'program (native, outside JS)';
  if (/blake/i.test(u) || /blake3|hash/i.test(f)) return 'fingerprint (BLAKE3)';
  if (/lz4/i.test(u) || /compress/i.test(f)) return 'compression (LZ4)';
  if (/segmenter|chunk/i.test(u) || /native\/build/.test(u)) return 'segmenter';
  if (/(abstract|classic|browser)-level|level-|\/level\//.test(u) || /leveldb/i.test(f)) return 'LevelDB';
  if (/\/src\/fuse\//.test(u)) return 'FUSE binding';
  if (/\/src\/namespace\//.test(u)) return 'namespace';
  if (/\/src\/store\//.test(u)) return 'store (other)';
  if (/\/src\/control\/|fastify|pino|avvio|find-my-way/.test(u)) return 'control plane';
  if (/msgpackr/.test(u)) return 'msgpack';
  if (u.startsWith('node:') || u === '' || !u.includes('/')) return 'node runtime (buffers, promises, streams, workers)';
  return 'other JS';
}

export async function summarizeProfile(file: string): Promise<ThreadSummary> {
  const p = JSON.parse(await fs.readFile(file, 'utf8')) as CpuProfile;
  const byNode = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) byNode.set(p.samples[i], (byNode.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const areas = new Map<string, number>();
  const fns = new Map<string, number>();
  for (const n of p.nodes) {
    const ms = (byNode.get(n.id) ?? 0) / 1000;
    if (ms === 0) continue;
    const a = area(n.callFrame);
    areas.set(a, (areas.get(a) ?? 0) + ms);
    const cf = n.callFrame;
    const where = cf.url ? ` ${cf.url.split('/').slice(-2).join('/')}:${cf.lineNumber + 1}` : '';
    const name = `${cf.functionName || '(anonymous)'}${where}`;
    fns.set(name, (fns.get(name) ?? 0) + ms);
  }
  const sorted = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => [k, Math.round(v)] as [string, number]);
  return { file, wallMs: Math.round((p.endTime - p.startTime) / 1000), areas: sorted(areas, 20), top: sorted(fns, 12) };
}

/** Summaries of every profile in `dir`, the busiest thread first. */
export async function summarizeProfiles(dir: string): Promise<ThreadSummary[]> {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(dir, f));
  const out = await Promise.all(files.map(summarizeProfile));
  const busy = (s: ThreadSummary) => s.areas.filter(([a]) => a !== 'idle').reduce((n, [, ms]) => n + ms, 0);
  return out.sort((a, b) => busy(b) - busy(a));
}

/** A few lines for a person: per thread, busy share of the wall time, areas and top functions. */
export function formatSummaries(label: string, threads: ThreadSummary[], maxThreads = 3): string {
  const lines: string[] = [];
  for (const s of threads.slice(0, maxThreads)) {
    const busy = s.areas.filter(([a]) => a !== 'idle').reduce((n, [, ms]) => n + ms, 0);
    lines.push(`${label}: ${path.basename(s.file)}: busy ${Math.round(busy)} of ${s.wallMs} ms (${((100 * busy) / Math.max(1, s.wallMs)).toFixed(0)}%)`);
    lines.push(`  areas: ${s.areas.filter(([a]) => a !== 'idle').map(([a, ms]) => `${a} ${ms}`).join(', ')}`);
    lines.push(`  top: ${s.top.filter(([f]) => !f.startsWith('(idle)')).slice(0, 8).map(([f, ms]) => `${f} ${ms}`).join('; ')}`);
  }
  return lines.join('\n');
}
