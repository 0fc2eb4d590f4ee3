// What a running VM is, as QMP reports it: enough to record in vm.json and recreate the VM
// (machine type, CPUs, memory, disks with their sizes, NICs), and the block node of each disk that
// the fleecing backup works on. Only queries that QEMU 7.2 (Debian 12) has are used.

import { vmError } from '../../errors.js';
import type { QmpChannel } from './qmp-channel.js';

export interface VmDisk {
  /** The guest-facing device id ('vda'), else the legacy drive name, else the node name. */
  device: string;
  /** Block node name of the disk's root node (the node bitmaps and fleecing attach to). */
  node: string;
  /** The image file. */
  file: string;
  /** Image format of the root node: 'qcow2', 'raw', ... */
  format: string;
  /** Virtual size in bytes. */
  sizeBytes: number;
  /** The disk is read-only for the guest (e.g. a CD-ROM or a shared image). */
  readOnly?: boolean;
  /** The qdev path of the device the disk is attached to, when it has one. */
  qdev?: string;
}

export interface VmNic {
  id: string;
  model?: string;
  mac?: string;
}

export interface VmDescription {
  name: string;
  uuid: string;
  status: string;
  machine: string;
  cpus: number;
  memoryBytes: number;
  disks: VmDisk[];
  nics: VmNic[];
  /** QEMU's version, e.g. '7.2.22'. */
  qemuVersion?: string;
  /** A direct kernel boot (-kernel/-initrd/-append), when the VM was started with one. */
  boot?: VmBoot;
}

export interface VmBoot {
  kernel: string;
  initrd?: string;
  append?: string;
}

interface BlockInfo {
  device: string;
  qdev?: string;
  inserted?: {
    'node-name': string;
    file: string;
    drv: string;
    ro: boolean;
    image: { filename: string; format: string; 'virtual-size': number };
  };
}

export async function describeVm(qmp: QmpChannel): Promise<VmDescription> {
  const [name, status, uuid, machines, cpus, mem, blocks] = await Promise.all([
    qmp.execute<{ name?: string }>('query-name'),
    qmp.execute<{ status: string }>('query-status'),
    qmp.execute<{ UUID: string }>('query-uuid'),
    qmp.execute<Array<{ name: string; alias?: string; 'is-current'?: boolean }>>('query-machines'),
    qmp.execute<unknown[]>('query-cpus-fast'),
    qmp.execute<{ 'base-memory': number; 'plugged-memory'?: number }>('query-memory-size-summary'),
    qmp.execute<BlockInfo[]>('query-block'),
  ]);
  const machine = machines.find((m) => m['is-current'])?.name ?? (await machineFromQom(qmp));
  const disks: VmDisk[] = [];
  for (const b of blocks) {
    const ins = b.inserted;
    if (!ins) continue; // an empty removable drive
    const qdevId = b.qdev?.match(/^\/machine\/peripheral\/([^/]+)/)?.[1];
    const device = b.device || qdevId || ins['node-name'];
    disks.push({
      device,
      node: ins['node-name'],
      file: ins.image?.filename ?? ins.file,
      format: ins.image?.format ?? ins.drv,
      sizeBytes: ins.image?.['virtual-size'] ?? 0,
      readOnly: ins.ro,
      ...(b.qdev ? { qdev: b.qdev } : {}),
    });
  }
  const v = qmp.version;
  return {
    name: name.name ?? '',
    uuid: uuid.UUID,
    status: status.status,
    machine,
    cpus: cpus.length,
    memoryBytes: mem['base-memory'] + (mem['plugged-memory'] ?? 0),
    disks,
    nics: await listNics(qmp),
    ...(v ? { qemuVersion: `${v.major}.${v.minor}.${v.micro}` } : {}),
    ...(await directBoot(qmp)),
  };
}

/**
 * The machine's kernel, initrd and append properties: a VM booted with -kernel does not boot from
 * its disks, so instant recovery needs them to start it again. Absent (or unreadable): none.
 */
async function directBoot(qmp: QmpChannel): Promise<{ boot?: VmBoot }> {
  const prop = (property: string) => qmp.execute<string>('qom-get', { path: '/machine', property }).then((v) => (typeof v === 'string' && v !== '' ? v : undefined), () => undefined);
  const [kernel, initrd, append] = await Promise.all([prop('kernel'), prop('initrd'), prop('append')]);
  if (kernel === undefined) return {};
  return { boot: { kernel, ...(initrd !== undefined ? { initrd } : {}), ...(append !== undefined ? { append } : {}) } };
}

/**
 * QEMU 7.2's query-machines has no is-current (8.0 added it); the /machine object's QOM type is
 * the machine type plus '-machine' ('pc-q35-7.2-machine').
 */
async function machineFromQom(qmp: QmpChannel): Promise<string> {
  const type = await qmp.execute<string>('qom-get', { path: '/machine', property: 'type' });
  if (typeof type !== 'string' || type.length === 0) throw vmError('IO', `QMP at ${qmp.address}: the machine type is unknown (qom-get /machine type)`);
  return type.replace(/-machine$/, '');
}

/** Every device under /machine/peripheral{,-anon} that has both `mac` and `netdev` properties. */
async function listNics(qmp: QmpChannel): Promise<VmNic[]> {
  const nics: VmNic[] = [];
  for (const parent of ['/machine/peripheral', '/machine/peripheral-anon']) {
    let children: Array<{ name: string; type: string }>;
    try {
      children = await qmp.execute('qom-list', { path: parent });
    } catch {
      continue; // no such container (no devices of that kind)
    }
    for (const c of children) {
      const model = c.type.match(/^child<(.+)>$/)?.[1];
      if (!model) continue;
      const path = `${parent}/${c.name}`;
      const props = await qmp.execute<Array<{ name: string }>>('qom-list', { path });
      if (!props.some((p) => p.name === 'mac') || !props.some((p) => p.name === 'netdev')) continue;
      const mac = await qmp.execute<string>('qom-get', { path, property: 'mac' });
      nics.push({ id: c.name, model, mac });
    }
  }
  return nics;
}
