// Several measured steps run round by round, each round in an order rotated by one: step k runs
// first in round k, and with three steps over three rounds or more each step runs right after
// each of the others at least once (within a round and across its end). Used where the figure is a ratio of two steps' medians
// (bench-catalog: fls, day 1, day 2), so that neither side is always the one that runs first in
// a round or the one that follows a given step (a day-1 build leaves garbage the next build may
// collect), and both sides are measured the same number of times.

/** Runs `steps` `rounds` times each, rotated as above; each step's own code records its timing. */
export async function interleaved(steps: Array<() => Promise<unknown>>, rounds: number): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < steps.length; k++) await steps[(k + round) % steps.length]();
  }
}
