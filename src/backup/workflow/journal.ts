// The journal of open quiesces: which VM or database this appliance froze and has not yet
// thawed. Written (and fsynced) before each quiesce is sent, cleared after its unquiesce
// answered, so an appliance killed in between finds at its next start what to undo.
//
// On-disk format (version 1), one file `<data>/quiesce-journal.json`, mode 0600 because a
// target may carry a database URL with a password:
//   {"format":"vmvault-quiesce-journal","version":1,"open":[Entry, ...]}
//   Entry = {"id": string, "vm": string, "workflow": string, "quiesce": "quiesce-X",
//            "undo": "unquiesce-X", "plugin": string, "target": {...}, "openedAt": ISO time,
//            "pid": number}
// Write ordering: the whole file is written to `<file>.tmp`, fsynced, renamed over the file,
// then the directory is fsynced; a crash leaves the old or the new file, never a torn one.
// A reader refuses a newer version (UNSUPPORTED_FORMAT) and a malformed file (CORRUPT_RECORD).

import fs from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { fromSystemError, vmError } from '../../errors.js';
import { writeFileAtomic } from '../../files/atomic-file.js';
import type { WorkflowTarget } from './plugin.js';

export const JOURNAL_FORMAT = 'vmvault-quiesce-journal';
export const JOURNAL_VERSION = 1;
export const JOURNAL_FILE = 'quiesce-journal.json';

export interface JournalEntry {
  id: string;
  vm: string;
  workflow: string;
  quiesce: string;
  undo: string;
  plugin: string;
  target: WorkflowTarget;
  openedAt: string;
  pid: number;
}

export class QuiesceJournal {
  private entries: JournalEntry[] = [];
  /** Writes are serialised: several VMs' runs share one journal. */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(readonly file: string) {}

  /** Opens (or starts) the journal in `dataDir`, reading what a previous process left open. */
  static async open(dataDir: string): Promise<QuiesceJournal> {
    const j = new QuiesceJournal(path.join(dataDir, JOURNAL_FILE));
    j.entries = await readJournal(j.file);
    return j;
  }

  /** The quiesces still open, oldest first. */
  list(): readonly JournalEntry[] {
    return this.entries;
  }

  /** Records a quiesce about to be sent; durable when this resolves. */
  async add(e: Omit<JournalEntry, 'id' | 'openedAt' | 'pid'>): Promise<JournalEntry> {
    const entry: JournalEntry = { ...e, id: randomUUID(), openedAt: new Date().toISOString(), pid: process.pid };
    await this.update((list) => [...list, entry]);
    return entry;
  }

  /** Forgets a quiesce whose unquiesce answered; durable when this resolves. */
  async remove(id: string): Promise<void> {
    await this.update((list) => list.filter((x) => x.id !== id));
  }

  /** The list in memory always equals the file: it changes only after the write succeeded. */
  private update(change: (list: JournalEntry[]) => JournalEntry[]): Promise<void> {
    const next = this.chain.then(async () => {
      const list = change(this.entries);
      await writeJournal(this.file, list);
      this.entries = list;
    });
    this.chain = next.catch(() => {});
    return next;
  }
}

async function readJournal(file: string): Promise<JournalEntry[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromSystemError(err, `reading the quiesce journal ${file}`);
  }
  let doc: { format?: unknown; version?: unknown; open?: unknown };
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw vmError('CORRUPT_RECORD', `quiesce journal ${file} is not JSON; check which VMs may still be frozen, thaw them, then delete the file`, { file }, err);
  }
  if (doc?.format !== JOURNAL_FORMAT || typeof doc.version !== 'number') {
    throw vmError('CORRUPT_RECORD', `quiesce journal ${file} is not a vmvault quiesce journal`, { file });
  }
  if (doc.version > JOURNAL_VERSION) {
    throw vmError('UNSUPPORTED_FORMAT', `quiesce journal ${file} has version ${doc.version}; this appliance reads ${JOURNAL_VERSION}`, { file });
  }
  if (!Array.isArray(doc.open) || !doc.open.every(isEntry)) {
    throw vmError('CORRUPT_RECORD', `quiesce journal ${file} has a malformed entry list`, { file });
  }
  return doc.open as JournalEntry[];
}

function isEntry(x: unknown): x is JournalEntry {
  const e = x as JournalEntry;
  return typeof e === 'object' && e !== null && typeof e.id === 'string' && typeof e.vm === 'string' &&
    typeof e.quiesce === 'string' && typeof e.undo === 'string' && typeof e.plugin === 'string' &&
    typeof e.target === 'object' && e.target !== null;
}

async function writeJournal(file: string, entries: JournalEntry[]): Promise<void> {
  await writeFileAtomic(file, JSON.stringify({ format: JOURNAL_FORMAT, version: JOURNAL_VERSION, open: entries }) + '\n', `writing the quiesce journal ${file}`);
}
