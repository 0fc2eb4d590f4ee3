import type { StatsReport } from '../../control/services.js';
import { EXIT } from '../exit-codes.js';
import { formatBytes, formatCount, formatPairs, formatRatio, plural } from '../format.js';
import { type CommandContext, expectArgs, output } from './context.js';

export async function statsCommand(ctx: CommandContext, args: string[]): Promise<number> {
  expectArgs(args, [], 'stats');
  const s = await ctx.client.get<StatsReport>('/stats');
  output(ctx, statsText(s), s);
  return EXIT.OK;
}

function statsText(s: StatsReport): string {
  return formatPairs([
    ['Logical data', `${formatBytes(s.logicalBytes)}  (live files in ${plural(s.shares, 'share')} and ${plural(s.snapshots, 'snapshot')})`],
    ['Stored on disk', formatBytes(s.storedBytes)],
    ['Dedup ratio', formatRatio(s.dedupRatio)],
    ['Compression ratio', formatRatio(s.compressionRatio)],
    ['Total ratio', formatRatio(s.totalRatio)],
    ['Ingested', formatBytes(s.ingestedBytes)],
    ['Unique segments', `${formatBytes(s.uniqueBytes)} in ${plural(s.segments, 'segment')}`],
    ['Containers', formatCount(s.containers)],
    ['Reclaimable', s.reclaimableBytes === null ? 'unknown until the next gc' : `${formatBytes(s.reclaimableBytes)} by vmvault gc, as of the gc at ${s.lastGcAt}`],
    ['Dead, kept', s.deadBytesKept === null ? 'unknown until the next gc' : `${formatBytes(s.deadBytesKept)} in containers mostly live (freed once more of them dies)`],
  ]);
}
