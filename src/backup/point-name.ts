// Restore points are snapshots named by their UTC time to the second, e.g. 2026-12-05T12-00-00Z
// (':' is awkward in paths and on SMB, so '-'). Two points within one second get -2, -3, ...

export function pointName(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/:/g, '-');
}

/** The first of `base`, `base-2`, `base-3`, ... that `taken` does not hold. */
export function uniquePointName(base: string, taken: Set<string>): string {
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
}

/** The dirty bitmap (checkpoint) taken at a point, on every disk of the VM. */
export function checkpointName(point: string): string {
  return `vmvault-${point}`;
}
