// fuse.ceiling_old.*: the do-nothing ceiling of fuse-native 2.2.6 (libfuse 2), the binding the
// mount stood on before issue 16. fuse-native is gone from the tree, so these figures are no
// longer measured: they are the last measurements, kept under their names so that a bench:fuse
// run still shows the new binding's ceiling beside the old one. Every line says it is historic.
// Measured by tools/bench/fuse-ceiling.ts (deleted in the commit that removed fuse-native; see
// git history), `dd bs=1M` of 4 GiB, best of 2; tools/PERFORMANCE.md has the runs.
import type { Figure } from './fuse-ceiling-ll.js';

export interface HistoricFigure extends Figure {
  historic: string;
}

const WHEN = 'fuse-native removed (issue 16); measured at 12b9eb2 on a quiet machine (load 1-3)';

export function ceilingOldFigures(): HistoricFigure[] {
  return [
    { figure: 'fuse.ceiling_old.write', value: 1329, unit: 'MB/s', historic: WHEN },
    { figure: 'fuse.ceiling_old.read', value: 2048, unit: 'MB/s', historic: WHEN },
  ];
}
