// The policy API's shapes, for the CLI (which may import only control/): type re-exports, erased
// at run time.
export type { PolicyDetail, PolicyView, PointView, PruneResult } from '../policy/policy-service.js';
export type { PolicyRun } from '../policy/run-history.js';
