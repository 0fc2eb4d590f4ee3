// The `discover` host request's answer (issue 13; the agent's side is src/agent/qemu-requests.ts,
// the shapes and version are plugins/qemu/discovery-types.ts), checked field by field: an agent is
// untrusted input, so a malformed answer is refused with the path of the first bad field, never
// half-used.

import { type DiscoveredDisk, type DiscoveredVm, type Discovery, DISCOVERY_VERSION } from '../plugins/qemu/discovery-types.js';
export { type DiscoveredDisk, type DiscoveredVm, type Discovery, DISCOVERY_VERSION };

const MAX_VMS = 4096;
const MAX_DISKS = 256;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

class Bad extends Error {}

function obj(v: unknown, at: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Bad(`${at} is not an object`);
  return v as Record<string, unknown>;
}
function str(v: unknown, at: string, max = 4096): string {
  if (typeof v !== 'string' || v.length > max || /[\u0000]/.test(v)) throw new Bad(`${at} is not a string of at most ${max} characters`);
  return v;
}
function count(v: unknown, at: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Bad(`${at} is not a non-negative integer`);
  return v;
}
function list(v: unknown, at: string, max: number): unknown[] {
  if (!Array.isArray(v) || v.length > max) throw new Bad(`${at} is not a list of at most ${max}`);
  return v;
}

/** The answer, or an Error whose message names the first bad field (e.g. "vms[2].uuid is not a UUID"). */
export function checkDiscovery(x: unknown): Discovery {
  const d = obj(x, 'the answer');
  if (d.v !== DISCOVERY_VERSION) throw new Bad(`discovery version ${JSON.stringify(d.v)}; this appliance reads ${DISCOVERY_VERSION}`);
  const vms = list(d.vms, 'vms', MAX_VMS).map((raw, i): DiscoveredVm => {
    const at = `vms[${i}]`;
    const v = obj(raw, at);
    const qmp = str(v.qmp, `${at}.qmp`, 1024);
    if (!qmp.startsWith('unix:/')) throw new Bad(`${at}.qmp is not unix:/path`);
    if (v.ok === false) return { qmp, ok: false, error: str(v.error, `${at}.error`) };
    if (v.ok !== true) throw new Bad(`${at}.ok is not true or false`);
    const uuid = str(v.uuid, `${at}.uuid`, 64);
    if (!UUID.test(uuid)) throw new Bad(`${at}.uuid is not a UUID`);
    const disks = list(v.disks, `${at}.disks`, MAX_DISKS).map((rd, j): DiscoveredDisk => {
      const dat = `${at}.disks[${j}]`;
      const dd = obj(rd, dat);
      return {
        device: str(dd.device, `${dat}.device`, 256),
        node: str(dd.node, `${dat}.node`, 256),
        file: str(dd.file, `${dat}.file`),
        format: str(dd.format, `${dat}.format`, 64),
        sizeBytes: count(dd.sizeBytes, `${dat}.sizeBytes`),
        dirtyBitmaps: list(dd.dirtyBitmaps, `${dat}.dirtyBitmaps`, 256).map((rb, k) => {
          const bat = `${dat}.dirtyBitmaps[${k}]`;
          const b = obj(rb, bat);
          return { name: str(b.name, `${bat}.name`, 1024), count: count(b.count, `${bat}.count`), granularity: count(b.granularity, `${bat}.granularity`), persistent: b.persistent === true, recording: b.recording !== false };
        }),
        rdBytes: count(dd.rdBytes, `${dat}.rdBytes`),
        wrBytes: count(dd.wrBytes, `${dat}.wrBytes`),
        rdOps: count(dd.rdOps, `${dat}.rdOps`),
        wrOps: count(dd.wrOps, `${dat}.wrOps`),
      };
    });
    const out: DiscoveredVm = { qmp, ok: true, name: str(v.name, `${at}.name`, 256), uuid: uuid.toLowerCase(), status: str(v.status, `${at}.status`, 64), disks };
    if (v.wrBytesPerSec !== undefined) out.wrBytesPerSec = count(v.wrBytesPerSec, `${at}.wrBytesPerSec`);
    return out;
  });
  return {
    v: DISCOVERY_VERSION,
    hostname: str(d.hostname, 'hostname', 255),
    sampledAt: count(d.sampledAt, 'sampledAt'),
    vms,
    problems: list(d.problems ?? [], 'problems', 256).map((p, i) => str(p, `problems[${i}]`)),
  };
}
