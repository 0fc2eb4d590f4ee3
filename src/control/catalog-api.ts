// What the catalog routes need from the appliance (issue 15): building a point's catalog as a
// job, its status, search across points, a file's versions, and a cataloged file's bytes. The
// composition root implements it (src/appliance-catalog.ts) over the catalog service and the VM
// registry; buildServer() registers the routes only when it is given one.

import type { Readable } from 'node:stream';
import type { CatalogStatus, FileVersionHit, FindHit } from '../catalog/catalog-service.js';
import type { JobContext } from './services.js';

export interface CatalogBuildRequest {
  /** A VM: its share (default: the VM's newest point). */
  vm?: string;
  /** Or a share directly (any image file in one of its snapshots). */
  share?: string;
  /** The restore point (snapshot name); default the newest. */
  point?: string;
  /** Only these image files of the snapshot (paths relative to it); default every *.raw, *.img, *.qcow2, *.vmdk. */
  images?: string[];
}

export interface CatalogBuildView {
  share: string;
  point: string;
  images: number;
  volumes: number;
  files: number;
  reusedVolumes: number;
  notes: string[];
}

export interface FindRequest {
  pattern: string;
  vm?: string;
  share?: string;
  /** Only points taken at or after this time (ms since the epoch). */
  sinceMs?: number;
  pathPrefix?: string;
  minSize?: number;
  maxSize?: number;
  limit?: number;
}

export type FindHitView = FindHit & { vm: string | null };
export type CatalogStatusView = CatalogStatus & { vm: string | null };
export type FileVersionView = FileVersionHit & { vm: string | null };

export interface CatalogFile {
  name: string;
  size: number;
  mtimeMs: number;
  /** The bytes, read by the file's extents through the namespace. */
  stream(): Readable;
}

export interface CatalogApi {
  /** Resolves defaults and refuses what cannot work (unknown VM, share or point) before a job starts. */
  checkBuild(req: CatalogBuildRequest): Promise<{ share: string; point: string }>;
  build(ctx: JobContext, target: { share: string; point: string; images?: string[] }): Promise<CatalogBuildView>;
  status(q: { vm?: string; share?: string }): Promise<CatalogStatusView[]>;
  find(q: FindRequest): Promise<FindHitView[]>;
  versions(q: { vm?: string; share?: string; path: string }): Promise<FileVersionView[]>;
  /** A regular file of a point ('latest' or omitted: the newest cataloged point). */
  openFile(q: { vm?: string; share?: string; point?: string; path: string; image?: string; volume?: string }): Promise<CatalogFile>;
}
