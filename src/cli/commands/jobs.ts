// Commands that start jobs and watch them to the end, and the jobs listing itself.

import { isActive, type JobView } from '../../control/jobs.js';
import type { GroupBackupResult } from '../../control/group-types.js';
import type { BackupRecordView, GcResult, IndexRebuildResult, RecoveryView, RestoreResult, VerifyResult, VerifyTarget } from '../../control/services.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT, exitCodeFor } from '../exit-codes.js';
import { formatBytes, formatCount, formatDuration, formatPairs, formatPercent, formatProgress, formatRate, formatTable, formatTime, plural } from '../format.js';
import { watchJob } from '../progress.js';
import { type CommandContext, expectArgs, output } from './context.js';

/** As the appliance makes them (control/jobs.ts); checked here to answer with the command's words. */
const JOB_ID = /^[0-9a-f]{12}$/;

export async function gcCommand(ctx: CommandContext, args: string[]): Promise<number> {
  expectArgs(args, [], 'gc');
  return startAndWatch(ctx, '/gc', undefined);
}

export async function verifyCommand(ctx: CommandContext, args: string[]): Promise<number> {
  if (args.length > 1) throw usage(`verify: expected [share[/snapshot]], got ${args.length} arguments`);
  const target: VerifyTarget = {};
  if (args[0] !== undefined) {
    const [share, snapshot, extra] = args[0].split('/');
    if (share === '' || snapshot === '' || extra !== undefined) throw usage(`verify: ${JSON.stringify(args[0])} is not <share> or <share>/<snapshot>`);
    target.share = share;
    if (snapshot !== undefined) target.snapshot = snapshot;
  }
  if (ctx.flags.full) target.full = true;
  if (ctx.flags.repair) target.repair = true;
  return startAndWatch(ctx, '/verify', target);
}

export async function indexCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  if (verb !== 'rebuild') throw usage(`index: expected rebuild, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  expectArgs(rest, [], 'index rebuild');
  return startAndWatch(ctx, '/index/rebuild', undefined);
}

export async function jobsCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [first, ...rest] = args;
  if (first === undefined) {
    const { jobs } = await ctx.client.get<{ jobs: JobView[] }>('/jobs');
    output(ctx, jobs.length === 0 ? 'no jobs' : jobsTable(jobs), jobs);
    return EXIT.OK;
  }
  if (first === 'cancel') {
    const [id] = expectArgs(rest, ['id'], 'jobs cancel');
    const job = await ctx.client.delete<JobView>(`/jobs/${seg(id)}`);
    output(ctx, `asked ${job.kind} job ${job.id} to cancel`, job);
    return EXIT.OK;
  }
  if (first === 'watch') {
    const [id] = expectArgs(rest, ['id'], 'jobs watch');
    return watchAndReport(ctx, id);
  }
  expectArgs(rest, [], 'jobs <id>');
  if (!JOB_ID.test(first)) {
    throw usage(`jobs: ${JSON.stringify(first)} is not a job id or one of watch, cancel (job ids are 12 hex digits; vmvault jobs lists them)`);
  }
  const job = await ctx.client.get<JobView>(`/jobs/${seg(first)}`);
  output(ctx, jobText(job), job);
  return EXIT.OK;
}

/** Starts a job with POST `route` and watches it to the end (or prints its id with --detach). */
export async function startAndWatch(ctx: CommandContext, route: string, body: unknown): Promise<number> {
  const { job: id } = await ctx.client.post<{ job: string }>(route, body);
  if (ctx.flags.detach) {
    output(ctx, `started job ${id} (vmvault jobs watch ${id})`, { job: id });
    return EXIT.OK;
  }
  return watchAndReport(ctx, id);
}

async function watchAndReport(ctx: CommandContext, id: string): Promise<number> {
  const { job, interrupted } = await watchJob(ctx.client, id, ctx.io);
  output(ctx, jobText(job), job);
  if (interrupted) return EXIT.INTERRUPTED;
  switch (job.state) {
    case 'succeeded':
      // A group run succeeds when at least one VM made its point; any VM that failed fails the command.
      if (job.kind === 'group-backup' && (job.result as GroupBackupResult | null)?.failed) return EXIT.FAILURE;
      return problemsFound(job) > 0 ? EXIT.DAMAGED : EXIT.OK;
    case 'cancelled':
      return EXIT.CANCELLED;
    case 'failed':
      return exitCodeFor(job.error?.code ?? 'INTERNAL');
    default:
      return EXIT.FAILURE;
  }
}

function problemsFound(job: JobView): number {
  if (job.kind !== 'verify' || job.result === null) return 0;
  return (job.result as VerifyResult).problems?.length ?? 0;
}

function jobText(job: JobView): string {
  const pairs: Array<[string, string]> = [
    ['Job', `${job.id} (${job.kind} of ${job.target})`],
    ['State', job.state + (job.cancelRequested && job.state === 'running' ? ' (cancelling)' : '')],
  ];
  const { done, total, unit, phase } = job.progress;
  if (isActive(job.state)) {
    if (phase !== undefined) pairs.push(['Phase', phase]);
    pairs.push(['Progress', formatProgress(done, total, unit)]);
    if (job.rate !== null) pairs.push(['Rate', formatRate(job.rate, unit)]);
    if (job.etaSeconds !== null) pairs.push(['Time left', formatDuration(job.etaSeconds)]);
  }
  pairs.push(['Started', formatTime(job.startedAt)]);
  if (job.endedAt !== null) pairs.push(['Ended', formatTime(job.endedAt)]);
  if (job.error !== null) pairs.push(['Error', `${job.error.code}: ${job.error.message}`]);
  if (job.state === 'succeeded') pairs.push(...resultPairs(job));
  return formatPairs(pairs);
}

function resultPairs(job: JobView): Array<[string, string]> {
  if (job.kind === 'gc') {
    const r = job.result as GcResult;
    return [
      ['Reclaimed', `${formatBytes(r.reclaimedBytes)} net (${formatBytes(r.copiedBytes)} of live segments copied forward)`],
      [
        'Containers',
        `${formatCount(r.containersRemoved)} removed, ${formatCount(r.containersRewritten)} rewritten` +
          (r.containersHeld ? `, ${formatCount(r.containersHeld)} left for the next run (writes were in progress)` : ''),
      ],
      ['Segments', `${formatCount(r.liveSegments)} live, ${formatCount(r.deadSegments)} dead`],
      ['Dead, kept', `${formatBytes(r.deadBytesKept)} of ${formatBytes(r.deadBytes)} dead, in containers mostly live (freed once more of them dies)`],
    ];
  }
  if (job.kind === 'verify') {
    const r = job.result as VerifyResult;
    const pairs: Array<[string, string]> = [
      [
        'Checked',
        r.full
          ? `${plural(r.segmentsChecked, 'segment')} in ${plural(r.containers, 'container')}, ${formatBytes(r.bytesRead)} read and re-hashed`
          : r.target === 'store'
            ? `${plural(r.segmentsChecked, 'segment')} in ${plural(r.containers, 'container')}, ${formatBytes(r.bytesRead)} read (structure; --full re-hashes)`
            : `${plural(r.segmentsChecked, 'segment')} found in the index, in ${plural(r.containers, 'container')} (nothing read; --full reads them)`,
      ],
      ['Referenced', `${plural(r.referencedSegments, 'segment')} reached from the files`],
      ['Problems', r.problems.length === 0 ? 'none' : formatCount(r.problems.length)],
    ];
    for (const p of r.problems.slice(0, 20)) pairs.push(['', `${p.kind}: ${p.message}`]);
    if (r.problems.length > 20) pairs.push(['', `... and ${r.problems.length - 20} more (--json lists all)`]);
    return pairs;
  }
  if (job.kind === 'backup') return backupPairs(job.result as BackupRecordView);
  if (job.kind === 'group-backup') return groupBackupPairs(job.result as GroupBackupResult);
  if (job.kind === 'restore') {
    const r = job.result as RestoreResult;
    const pairs: Array<[string, string]> = [['Point', r.point], ...r.files.map((f, i): [string, string] => [i === 0 ? 'Files' : '', f])];
    if (r.ha !== undefined) pairs.push(['HA resource', `${r.ha.resource}: ${r.ha.before} before, ${r.ha.after} after`]);
    return pairs;
  }
  if (job.kind === 'dr-copy') {
    const r = job.result as { copy: string; to: string; takenAt: string; containers: number; containersCopied: number; containersReused: number; bytesWritten: number; bytesTotal: number; files: number };
    return [
      ['Copy', `${r.copy} in ${r.to}, consistent as of ${formatTime(r.takenAt)}`],
      ['Containers', `${formatCount(r.containers)}: ${formatCount(r.containersCopied)} copied, ${formatCount(r.containersReused)} already there`],
      ['Written', `${formatBytes(r.bytesWritten)} of the ${formatBytes(r.bytesTotal)} the copy holds; ${plural(r.files, 'state file')}`],
    ];
  }
  if (job.kind === 'catalog') {
    const r = job.result as { share: string; point: string; images: number; volumes: number; files: number; reusedVolumes: number; notes: string[] };
    const pairs: Array<[string, string]> = [
      ['Point', `${r.share} ${r.point}`],
      ['Cataloged', `${plural(r.files, 'entry', 'entries')} in ${plural(r.volumes, 'volume')} of ${plural(r.images, 'image')}; ${formatCount(r.reusedVolumes)} unchanged volume(s) reused`],
    ];
    for (const n of r.notes.slice(0, 20)) pairs.push(['Note', n]);
    return pairs;
  }
  if (job.kind === 'clone') {
    const r = job.result as { point: string; destination: string; appliance?: { skipped: boolean; bytesSent: number; logicalBytes: number; segmentsSent: number; segments: number }; archive?: { skipped: boolean; bytesWritten: number; logicalBytes: number; segmentsWritten: number; segments: number } };
    const a = r.appliance;
    const d = r.archive;
    const what = a
      ? a.skipped ? 'already there' : `${formatCount(a.segmentsSent)} of ${formatCount(a.segments)} segments sent, ${formatBytes(a.bytesSent)} on the wire for ${formatBytes(a.logicalBytes)}`
      : d ? (d.skipped ? 'already there' : `${formatCount(d.segmentsWritten)} of ${formatCount(d.segments)} segments written, ${formatBytes(d.bytesWritten)} for ${formatBytes(d.logicalBytes)}`) : '';
    return [['Point', r.point], ['Copy', `${r.destination}: ${what}, verified`]];
  }
  if (job.kind === 'recover') {
    const r = job.result as RecoveryView;
    const pairs: Array<[string, string]> = [
      ['Recovery', `${r.name}: ${r.vm} at ${r.point}, ${r.state}${r.pid === null ? '' : ` (QEMU pid ${r.pid})`}`],
      ...r.disks.map((d, i): [string, string] => [i === 0 ? 'Disks' : '', `${d.device}: ${d.file}`]),
      ['QMP', r.qmp],
      ['Guest agent', r.qga],
      ['Console', r.console],
    ];
    for (const n of r.notes) pairs.push(['Note', n]);
    return pairs;
  }
  const r = job.result as IndexRebuildResult;
  return [
    ['Read', `${plural(r.records, 'record')} in ${plural(r.containers, 'container')}`],
    ['Index', `${formatCount(r.entriesAdded)} added, ${formatCount(r.entriesChanged)} changed, ${formatCount(r.entriesRemoved)} removed`],
    ['Unreadable', r.unreadableContainers.length === 0 ? 'none' : r.unreadableContainers.join(', ')],
  ];
}

/** A group run: the moment, the skew, the copy order, and each VM's outcome. */
function groupBackupPairs(r: GroupBackupResult): Array<[string, string]> {
  const pairs: Array<[string, string]> = [
    ['Point', `${r.point} (group ${r.group}): ${r.succeeded} of ${r.vms.length} VM(s)`],
    ['Skew', r.skewMs === null ? '-' : `${r.skewMs} ms between the first and last transaction`],
    ['Copy order', `${r.order}: ${r.copyOrder.join(', ') || '-'} (${r.parallel} at a time)`],
  ];
  for (const v of r.vms) {
    pairs.push([
      v.vm,
      v.ok
        ? `${v.kind}, ${formatBytes(v.bytesRead ?? 0)} read, snapshot held ${v.lifetimeMs === undefined ? '-' : formatDuration(v.lifetimeMs / 1000)}`
        : `FAILED: ${v.error?.message ?? 'unknown'}`,
    ]);
  }
  return pairs;
}

/** What a finished backup did, for the job view and `backup`'s closing lines. */
export function backupPairs(r: BackupRecordView): Array<[string, string]> {
  const pairs: Array<[string, string]> = [
    ['Point', `${r.point} (${r.kind}, workflow ${r.workflow})`],
    ['Read', `${formatBytes(r.bytesRead)} in ${formatDuration(r.durationMs / 1000)}, ${formatBytes(r.bytesWritten)} written`],
    ['Frozen', r.freezeMs === null ? 'not frozen' : `${formatCount(Math.round(r.freezeMs))} ms`],
  ];
  for (const d of r.disks) {
    pairs.push(['', `${d.device}: ${d.kind}, ${formatBytes(d.bytesRead)} of ${formatBytes(d.sizeBytes)} read${d.fullReason === undefined ? '' : ` (full: ${d.fullReason})`}`]);
  }
  return pairs;
}

function jobsTable(jobs: JobView[]): string {
  return formatTable(
    ['ID', 'KIND', 'STATE', 'PROGRESS', 'STARTED', 'TARGET'],
    jobs.map((j) => [j.id, j.kind, j.state, formatPercent(j.progress.done, j.progress.total), formatTime(j.startedAt), j.target]),
  );
}
