// What the layers above need of the store to read past damage with another copy and to repair
// the primary (store/repair/): the store's types, re-exported, since no layer above the
// namespace imports the store. A repair itself is `Namespace.store.repairSegment`.

export { ReadRescue } from '../store/store.js';
export type { Damage, Problem, ReadRescueOptions, RepairItem, RepairResult, SegmentFetcher } from '../store/store.js';
