// The StoreCore behind a SegmentStore, for the store's own tests and benchmarks only: it is not
// part of the store's public surface (store.ts), and the layer test forbids the layers above
// from importing this file.

import type { StoreCore } from './store-core.js';

const cores = new WeakMap<object, StoreCore>();

export function registerInternals(store: object, core: StoreCore): void {
  cores.set(store, core);
}

export function internalsOf(store: object): StoreCore {
  const core = cores.get(store);
  if (!core) throw new Error('not an open SegmentStore');
  return core;
}
