// The JSON messages of the fingerprint-first protocol, versions 1 and 2 (PROTOCOL.md, "Session
// messages"): opening a session, the old boundaries of an incremental, finishing. Fingerprints
// and segments never travel as JSON (frames.ts).

export const TRANSFER_PREFIX = '/api/v1/transfer';

export interface OpenRequest {
  protocol: number;
  share: string;
  path: string;
  size: number;
  /** Changed ranges since the file's current content; absent = a full send. */
  ranges?: Array<{ offset: number; length: number }>;
  taskId?: string;
}

/** The store's segmenter: the sender must cut with exactly these. */
export interface ChunkerInfo {
  algorithm: 'fastcdc-gear-v1';
  minSize: number;
  avgSize: number;
  maxSize: number;
}

/**
 * A region the sender cuts and describes in recipes: from `start` (a boundary of the old
 * version, so both cut in step) until its cut lands on an old boundary at or past `end` (ask
 * /boundaries), or the file's end.
 */
export interface Region {
  start: number;
  end: number;
}

export interface OpenReply {
  session: string;
  protocol: number;
  chunker: ChunkerInfo;
  /** What the recipe already covers (0 for a new session; more when a task resumes). */
  position: number;
  regions: Region[];
  resumed: boolean;
  /** Known answers are store-wide (a trusted agent) rather than the share's scope. */
  storeWide: boolean;
}

export interface BoundariesReply {
  /** Ascending old boundaries >= the asked offset (segment starts, the old end). */
  boundaries: number[];
  /** Where to ask next if the list was cut short; null if it reaches the old end. */
  next: number | null;
}

export interface SegmentsReply {
  stored: number;
  duplicates: number;
}

export interface RecipeReply {
  position: number;
}

export interface FinishReply {
  share: string;
  path: string;
  size: number;
  /** Segments (and bytes) the recipe named, and how many of them this session sent. */
  segments: number;
  segmentsSent: number;
}
