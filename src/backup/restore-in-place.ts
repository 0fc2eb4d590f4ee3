// Restore in place (issue 13): a point's disks written over the disk files the VM itself uses,
// HA-aware. Step beside its undo:
//
//   the VM's disk files: query-block of the running VM,       -
//     else the point's vm.json (the files at backup time)
//   every target checked: a plain file the appliance can       -
//     write, raw or qcow2; nothing touched before all pass
//   HA resource offline: target-role Stopped, wait            brought back as it was (Started if
//                                                               it was), also when a later step fails
//   the VM must be stopped: its QMP no longer answers          -
//     (an HA VM: waited for a moment; else refused at once)
//   each disk written beside its file (`.vmvault-restore`),    the partial files removed
//     owner and mode copied from it
//   all renamed over the originals, only once all are written  -
//
// Until the renames nothing the VM uses has changed; a failure before them loses nothing. The
// job log says each step and what was undone.
//
// The files are the appliance's own (the VM's paths are visible here), or, for a VM on a host, on
// that host, written through its agent (InPlaceFiles; host-in-place.ts): the same steps, each a
// host request that names only the disk file QEMU reported, inside the agent's allowed folders.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { isVmvaultError, vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import type { HaResourceState } from '../plugins/pacemaker/ha-state.js';
import type { HaControl } from '../plugins/pacemaker/pacemaker.js';
import type { QmpChannel } from '../plugins/qemu/qmp-channel.js';
import { describeVm } from '../plugins/qemu/vm-info.js';
import { restoreFile } from './restore.js';

const run = promisify(execFile);

/** Suffix of the file a disk is restored into before it replaces the original. */
export const IN_PLACE_SUFFIX = '.vmvault-restore';

export interface InPlaceOptions {
  ns: Namespace;
  vm: { name: string; share: string; qmp: string };
  point: string;
  /** The point's devices (its record). */
  devices: string[];
  /** Opens the VM's QMP (rejects when QEMU does not run). */
  openQmp: (address: string) => Promise<QmpChannel>;
  /** The cluster manager; absent: no VM is HA (a running VM is refused). */
  ha?: Pick<HaControl, 'resourceOf' | 'setRole'>;
  log: (line: string) => void;
  advance?: (n: number) => void;
  signal?: AbortSignal;
  /** How long target-role changes may take. Default 30 s (the plug-in's). */
  roleTimeoutMs?: number;
  /** How long, after its resource stopped, an HA VM's QEMU may take to go away. Default 15 s. */
  vmStopWaitMs?: number;
  /**
   * Where the disk files are written: the appliance's own file system (default), or a VM's host
   * through its agent (host-in-place.ts).
   */
  files?: InPlaceFiles;
}

export type DiskFileKind = 'file' | 'block' | 'link' | 'other' | 'missing';

/**
 * The disk files' side of an in-place restore. `file` is always a disk file the VM's QEMU reported
 * (query-block, else the point's vm.json); every other name is derived from it.
 */
export interface InPlaceFiles {
  /** For messages: "on the appliance host", "on host node1 (through agent a1)". */
  readonly where: string;
  /** For messages: who writes the files ("the appliance", "agent a1"). */
  readonly writer: string;
  /** What the file is there, and whether it and its folder may be written. */
  stat(file: string): Promise<{ kind: DiskFileKind; writable: boolean }>;
  /**
   * The point's disk (src.path in the namespace) written beside `file` as file+IN_PLACE_SUFFIX in
   * `format`, with `file`'s owner and mode, durable. A failure may leave partial files: discard().
   */
  writeBeside(file: string, format: 'raw' | 'qcow2', src: { ns: Namespace; path: string }, o: { signal?: AbortSignal; advance?: (n: number) => void }): Promise<void>;
  /** file+IN_PLACE_SUFFIX renamed over `file`. */
  replace(file: string): Promise<void>;
  /** Whatever writeBeside made for `file` removed; the disk itself untouched. */
  discard(file: string): Promise<void>;
}

export interface InPlaceResult {
  point: string;
  files: string[];
  /** The HA resource, when the VM is one, and its role before and after. */
  ha?: { resource: string; before: string; after: string };
}

interface Target {
  device: string;
  file: string;
  format: 'raw' | 'qcow2';
}

export async function restoreInPlace(o: InPlaceOptions): Promise<InPlaceResult> {
  const { log } = o;
  // 1. Which files: the running VM's own word, else what the point recorded.
  const probe = await qmpState(o.openQmp, o.vm.qmp);
  let disks: Array<{ device: string; file: string; format: string }>;
  if (probe.qmp !== undefined) {
    try {
      disks = (await describeVm(probe.qmp)).disks;
    } finally {
      await probe.qmp.close().catch(() => {});
    }
    log(`the VM's disks (query-block): ${disks.map((d) => `${d.device} ${d.file}`).join(', ')}`);
  } else {
    disks = await pointDisks(o.ns, o.vm.share, o.point);
    log(`QEMU of ${o.vm.name} does not run (${probe.why}); its disks as the point ${o.point} recorded them: ${disks.map((d) => `${d.device} ${d.file}`).join(', ')}`);
  }

  // 2. Every target checked before anything changes.
  const files = o.files ?? localFiles;
  const targets: Target[] = [];
  for (const device of o.devices) {
    const d = disks.find((x) => x.device === device);
    if (d === undefined) {
      throw vmError('INVALID_ARGUMENT', `the point's disk ${device} is not among VM ${o.vm.name}'s disks (${disks.map((x) => x.device).join(', ') || 'none'}); restore it with --to DIR instead`, { vm: o.vm.name, device });
    }
    targets.push(await checkTarget(o.vm.name, d, files));
  }

  // 3. An HA VM's resource offline, so the cluster does not restart it on a disk being rewritten.
  let res: HaResourceState | undefined;
  if (o.ha !== undefined) res = await o.ha.resourceOf(o.vm.name);
  if (res !== undefined && !res.managed) {
    throw vmError('CONFLICT', `VM ${o.vm.name} is cluster resource ${res.resource}, which the cluster does not manage now (is-managed=false or maintenance): it could not take it offline; manage it again first`, { vm: o.vm.name, resource: res.resource });
  }
  const wasActive = res !== undefined && res.role !== 'Stopped';
  let result: InPlaceResult | undefined;
  let failure: unknown;
  try {
    if (res !== undefined) {
      if (wasActive) {
        log(`taking cluster resource ${res.resource} offline (${res.role}${res.node ? ` on ${res.node}` : ''}): target-role Stopped`);
        const t0 = Date.now();
        await o.ha!.setRole(res.resource, 'Stopped', { timeoutMs: o.roleTimeoutMs });
        log(`cluster resource ${res.resource} is Stopped (${Date.now() - t0} ms)`);
      } else {
        log(`cluster resource ${res.resource} is already Stopped; it stays so`);
      }
    }

    // 4. The VM must not run while its disks are replaced.
    await mustBeStopped(o, res);

    // 5. Each disk beside its file, then 6. all renamed over the originals.
    await writeAll(o, files, targets);
    for (const t of targets) {
      await files.replace(t.file);
      log(`${t.device}: ${t.file} is now the point ${o.point}`);
    }
    result = { point: o.point, files: targets.map((t) => t.file) };
  } catch (err) {
    failure = err;
    log(`in-place restore failed: ${(err as Error).message}`);
  }

  // The resource back as it was, whatever happened above.
  if (res !== undefined) {
    let after = 'Stopped';
    if (wasActive) {
      try {
        log(`bringing cluster resource ${res.resource} back online: target-role Started`);
        const back = await o.ha!.setRole(res.resource, 'Started', { timeoutMs: o.roleTimeoutMs });
        after = `${back.role}${back.node ? ` on ${back.node}` : ''}`;
        log(`cluster resource ${res.resource} is ${after}`);
      } catch (err) {
        log(`bringing cluster resource ${res.resource} back online failed: ${(err as Error).message}`);
        const disks = result ? `the disks were restored, but ` : '';
        const cause = failure ? ` (after the restore failed: ${(failure as Error).message})` : '';
        throw vmError(
          isVmvaultError(err) ? err.code : 'PLUGIN_FAILED',
          `${disks}cluster resource ${res.resource} of VM ${o.vm.name} could not be brought back online: ${(err as Error).message}; start it with crm_resource --resource ${res.resource} --set-parameter target-role --meta --parameter-value Started${cause}`,
          { vm: o.vm.name, resource: res.resource },
          err,
        );
      }
    }
    if (result) result.ha = { resource: res.resource, before: `${res.role}${res.node ? ` on ${res.node}` : ''}`, after };
  }
  if (failure !== undefined) throw failure;
  return result!;
}

/** Whether QEMU answers on its QMP (a connection refused or a missing socket: it does not run). */
async function qmpState(open: InPlaceOptions['openQmp'], address: string): Promise<{ qmp?: QmpChannel; why?: string; unknown?: boolean }> {
  try {
    return { qmp: await open(address) };
  } catch (err) {
    const errno = (err as { details?: { errno?: string } }).details?.errno;
    // Through a host's agent only the message carries the errno (socket-address.ts words it).
    const relayed = /cannot connect \((ENOENT|ECONNREFUSED)\)/.test((err as Error).message);
    if (errno === 'ENOENT' || errno === 'ECONNREFUSED' || relayed || isVmvaultError(err, 'CLOSED')) return { why: (err as Error).message };
    // No greeting in time (another client holds the monitor), or anything else: it may run.
    return { why: (err as Error).message, unknown: true };
  }
}

async function mustBeStopped(o: InPlaceOptions, res: HaResourceState | undefined): Promise<void> {
  const wait = res !== undefined ? (o.vmStopWaitMs ?? 15_000) : 0;
  const deadline = Date.now() + wait;
  for (;;) {
    const s = await qmpState(o.openQmp, o.vm.qmp);
    await s.qmp?.close().catch(() => {});
    if (s.qmp === undefined && !s.unknown) {
      o.log(`QEMU of ${o.vm.name} is not running`);
      return;
    }
    if (Date.now() >= deadline) {
      const how = s.qmp !== undefined ? `its QMP at ${o.vm.qmp} answers` : `its QMP at ${o.vm.qmp} may be in use (${s.why})`;
      if (res !== undefined) {
        throw vmError('CONFLICT', `VM ${o.vm.name} still runs (${how}) although the cluster stopped resource ${res.resource}: its resource agent did not stop this QEMU; stop the VM, then restore in place`, { vm: o.vm.name, resource: res.resource });
      }
      throw vmError('CONFLICT', `VM ${o.vm.name} is running (${how}): shut it down before restoring its disks in place (or restore with --to DIR)`, { vm: o.vm.name });
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A disk file in-place may overwrite: an absolute path to a regular file we can write, raw or qcow2. */
async function checkTarget(vm: string, d: { device: string; file: string; format: string }, files: InPlaceFiles): Promise<Target> {
  const say = (why: string, code: 'INVALID_ARGUMENT' | 'FORBIDDEN' = 'INVALID_ARGUMENT') =>
    vmError(code, `disk ${d.device} of VM ${vm} (${d.file}) ${why}; --in-place writes only plain files ${files.writer} can write: restore with --to DIR instead`, { vm, device: d.device, file: d.file });
  if (!path.isAbsolute(d.file) || path.normalize(d.file) !== d.file) throw say('is not a file path (a network or json: block device)');
  if (d.format !== 'raw' && d.format !== 'qcow2') throw say(`has format ${d.format}, not raw or qcow2`);
  let st: { kind: DiskFileKind; writable: boolean };
  try {
    st = await files.stat(d.file);
  } catch (err) {
    if (isVmvaultError(err, 'FORBIDDEN')) throw say(`may not be written ${files.where} (${(err as Error).message})`, 'FORBIDDEN');
    throw err;
  }
  if (st.kind === 'missing') throw say(`does not exist ${files.where}`);
  if (st.kind === 'block') throw say('is a block device');
  if (st.kind !== 'file') throw say(st.kind === 'link' ? 'is a symbolic link, not a regular file' : 'is not a regular file');
  if (!st.writable) throw say(`is not writable ${files.where} (or its directory is not)`);
  return { device: d.device, file: d.file, format: d.format };
}

/** The appliance's own file system: the VM's disk files are visible here. */
const localFiles: InPlaceFiles = {
  where: 'on the appliance host',
  writer: 'the appliance',
  async stat(file) {
    let st;
    try {
      st = await fs.stat(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing', writable: false };
      throw vmError('INVALID_ARGUMENT', `${file} cannot be examined (${(err as NodeJS.ErrnoException).code})`);
    }
    const kind: DiskFileKind = st.isBlockDevice() ? 'block' : st.isFile() ? 'file' : 'other';
    const writable = await fs.access(file, fs.constants.W_OK).then(() => fs.access(path.dirname(file), fs.constants.W_OK)).then(() => true, () => false);
    return { kind, writable };
  },
  async writeBeside(file, format, src, o) {
    const final = `${file}${IN_PLACE_SUFFIX}`;
    const raw = format === 'raw' ? final : `${file}${IN_PLACE_SUFFIX}.raw`;
    for (const f of new Set([final, raw])) await fs.rm(f, { force: true }); // a killed earlier try
    await restoreFile(src.ns, src.path, raw, { signal: o.signal, advance: o.advance });
    if (format === 'qcow2') {
      try {
        await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, final]);
      } catch (err) {
        throw vmError('IO', `qemu-img convert of ${file} to qcow2 failed: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
      }
      await fs.rm(raw, { force: true });
    }
    const st = await fs.stat(file);
    await fs.chmod(final, st.mode & 0o7777);
    await fs.chown(final, st.uid, st.gid).catch(() => {});
  },
  async replace(file) {
    await fs.rename(`${file}${IN_PLACE_SUFFIX}`, file);
  },
  async discard(file) {
    for (const f of [`${file}${IN_PLACE_SUFFIX}`, `${file}${IN_PLACE_SUFFIX}.raw`]) await fs.rm(f, { force: true });
  },
};

/** The disks vm.json of the point recorded (device, file, format). */
async function pointDisks(ns: Namespace, share: string, point: string): Promise<Array<{ device: string; file: string; format: string }>> {
  const p = `/${share}/.snapshots/${point}/vm.json`;
  const fh = await ns.fs.open(p, 0);
  let body: Buffer;
  try {
    body = await ns.fs.read(fh, 0, (await ns.fs.fgetattr(fh)).size);
  } finally {
    await ns.fs.release(fh);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    throw vmError('CORRUPT_RECORD', `${p} is not JSON`);
  }
  const disks = (doc as { disks?: unknown }).disks;
  if (!Array.isArray(disks)) throw vmError('CORRUPT_RECORD', `${p} lists no disks`);
  return disks.map((d, i) => {
    const x = d as { device?: unknown; file?: unknown; format?: unknown };
    if (typeof x.device !== 'string' || typeof x.file !== 'string' || typeof x.format !== 'string') throw vmError('CORRUPT_RECORD', `${p}: disk ${i} lacks device, file or format`);
    return { device: x.device, file: x.file, format: x.format };
  });
}

/** Writes every target's new content beside it; removes every partial file on failure. */
async function writeAll(o: InPlaceOptions, files: InPlaceFiles, targets: Target[]): Promise<void> {
  const started: Target[] = [];
  try {
    for (const t of targets) {
      started.push(t);
      await files.writeBeside(t.file, t.format, { ns: o.ns, path: `/${o.vm.share}/.snapshots/${o.point}/${t.device}.raw` }, { signal: o.signal, advance: o.advance });
      o.log(`${t.device}: written beside ${t.file} (${t.format}) ${files.where}`);
    }
  } catch (err) {
    for (const t of started) await files.discard(t.file).catch((e) => o.log(`removing the partial files of ${t.file} failed: ${(e as Error).message}`));
    o.log(`removed the partly written files; the VM's disks are unchanged`);
    throw err;
  }
}
