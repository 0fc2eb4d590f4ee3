// The job history kept across restarts: one JSON file in the data directory, rewritten whole
// (write a temporary file, fsync, rename) whenever a job starts or ends, at most one write at a
// time; changes that arrive during a write are folded into the next one.
//
// Format (version 1), `<data>/jobs.json`:
//   { "format": "vmvault-jobs", "version": 1, "jobs": [JobView, ...] }   oldest first
// JobView is the shape GET /api/v1/jobs/{id} returns (src/control/jobs.ts). A reader refuses a
// newer version (UNSUPPORTED_FORMAT) rather than guess; a file that does not parse is moved
// aside to jobs.json.bad-<time> and the history starts empty: losing the history must never
// stop the appliance from starting.

import fs from 'node:fs/promises';
import { vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';
import type { JobView } from './jobs.js';

export const JOB_HISTORY_FORMAT = 'vmvault-jobs';
export const JOB_HISTORY_VERSION = 1;

export class JobHistoryFile {
  private pending: JobView[] | undefined;
  private writing: Promise<void> | undefined;
  private lastError: Error | undefined;

  constructor(
    readonly file: string,
    private readonly log: (line: string) => void = () => {},
  ) {}

  /** The saved jobs, oldest first; [] when there is no file yet. */
  async load(): Promise<JobView[]> {
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    let doc: { format?: unknown; version?: unknown; jobs?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
      if (doc.format !== JOB_HISTORY_FORMAT || typeof doc.version !== 'number' || !Array.isArray(doc.jobs)) throw new Error('not a vmvault job history');
    } catch (err) {
      const aside = `${this.file}.bad-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await fs.rename(this.file, aside);
      this.log(`job history ${this.file} is unreadable (${(err as Error).message}); moved it to ${aside} and started an empty history`);
      return [];
    }
    if (doc.version > JOB_HISTORY_VERSION) {
      throw vmError('UNSUPPORTED_FORMAT', `job history ${this.file} has format version ${doc.version}; this vmvault reads up to ${JOB_HISTORY_VERSION}`);
    }
    return (doc.jobs as JobView[]).filter((j) => j && typeof j.id === 'string' && typeof j.state === 'string');
  }

  /** Schedules a write of `jobs` (oldest first); returns at once. */
  save(jobs: JobView[]): void {
    this.pending = jobs;
    this.writing ??= this.drain();
  }

  /** Resolves once everything saved so far is on disk. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending) {
        const jobs = this.pending;
        this.pending = undefined;
        try {
          await this.write(jobs);
          this.lastError = undefined;
        } catch (err) {
          // Said once per run of failures: the jobs themselves go on.
          if (!this.lastError) this.log(`saving the job history to ${this.file} failed: ${(err as Error).message}`);
          this.lastError = err as Error;
        }
      }
    } finally {
      this.writing = undefined;
    }
  }

  private async write(jobs: JobView[]): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify({ format: JOB_HISTORY_FORMAT, version: JOB_HISTORY_VERSION, jobs }) + '\n');
  }
}
