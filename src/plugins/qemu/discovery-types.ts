// The `discover` host request's answer (issue 13), version DISCOVERY_VERSION: what an agent
// (src/agent/qemu-requests.ts) reads of its host's QEMUs over QMP, and what the appliance
// (src/backup/discovery.ts) checks field by field before using it. One definition for both
// sides of the wire.

/** Version of the `discover` answer. */
export const DISCOVERY_VERSION = 1;

export interface DiscoveredDisk {
  device: string;
  node: string;
  file: string;
  format: string;
  sizeBytes: number;
  dirtyBitmaps: Array<{ name: string; count: number; granularity: number; persistent: boolean; recording: boolean }>;
  rdBytes: number;
  wrBytes: number;
  rdOps: number;
  wrOps: number;
}

export type DiscoveredVm =
  | { qmp: string; ok: true; name: string; uuid: string; status: string; disks: DiscoveredDisk[]; wrBytesPerSec?: number }
  | { qmp: string; ok: false; error: string };

export interface Discovery {
  v: number;
  hostname: string;
  /** The agent's clock when the block stats were read (ms since the epoch). */
  sampledAt: number;
  vms: DiscoveredVm[];
  /** Folders that could not be read, and why. */
  problems: string[];
}
