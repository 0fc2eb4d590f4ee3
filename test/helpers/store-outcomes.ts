// Opening a test store around a check, and reading every stored version back, as the corruption
// and rebuild tests both do before and after they damage or repair a store.

import { SegmentStore, type FileVersion } from '../../src/store/store.js';
import { readOutcome } from './store-probe.js';

export async function withStore<T>(dir: string, fn: (s: SegmentStore) => Promise<T>): Promise<T> {
  // One codec worker: under the test runner each worker takes seconds to start.
  const s = await SegmentStore.open(dir, { mustExist: true, workers: 1 });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** How reading each version back ends, by name ('identical' or an error code). */
export async function outcomes(
  s: SegmentStore,
  files: ReadonlyArray<{ name: string; version: FileVersion; content: Buffer }>,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of files) out[f.name] = await readOutcome(s, f.version, f.content);
  return out;
}
