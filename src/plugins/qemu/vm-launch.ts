// The QEMU command line that recreates a backed-up VM from its vm.json (what describeVm recorded:
// machine type, CPUs, memory, disks, NICs, a direct kernel boot) with its disks on given files,
// for instant recovery. What cannot be recreated here is said in `notes`, never silently dropped:
// NICs get QEMU user networking (the production network is not reachable from the appliance),
// every disk is a virtio-blk device (vm.json does not record the bus).
//
// Sockets: QMP and the guest agent's virtio-serial channel are UNIX sockets in `dir`, and the
// serial console goes to `dir/console.log`.

import path from 'node:path';
import { vmError } from '../../errors.js';
import type { KvmVerdict } from './kvm-probe.js';

/** vm.json as the backup service writes it (VM_JSON_VERSION 1); only what a launch reads. */
export interface VmJson {
  version: number;
  name?: string;
  machine: string;
  cpus: number;
  memoryBytes: number;
  disks: Array<{ device: string; format?: string; sizeBytes: number; readOnly?: boolean }>;
  nics?: Array<{ id: string; model?: string; mac?: string }>;
  boot?: { kernel?: string; initrd?: string; append?: string };
}

export interface LaunchDisk {
  /** The guest device id from vm.json ('vda'). */
  device: string;
  /** The raw image file QEMU opens. */
  file: string;
  readOnly?: boolean;
}

export interface LaunchPlan {
  argv: string[];
  qmpSocket: string;
  qgaSocket: string;
  consoleLog: string;
  /** Block node names per device: the format node the device uses and its file node. */
  nodes: Array<{ device: string; node: string; fileNode: string; file: string }>;
  /** What vm.json asked for that this launch does differently, in words. */
  notes: string[];
}

const ID = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const MACHINE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
/** NIC models QEMU 7.2 has that work with user networking; others become virtio-net-pci. */
const NIC_MODELS = new Set(['virtio-net-pci', 'e1000', 'e1000e', 'rtl8139', 'vmxnet3']);

/** Checks vm.json's fields a launch relies on; INVALID_ARGUMENT naming the field otherwise. */
export function checkVmJson(v: unknown, where: string): VmJson {
  const bad = (what: string) => vmError('INVALID_ARGUMENT', `${where}: ${what}; this point cannot be started`);
  if (typeof v !== 'object' || v === null) throw bad('not a JSON object');
  const j = v as Record<string, unknown>;
  if (j.version !== 1) throw vmError('UNSUPPORTED_FORMAT', `${where}: vm.json version ${String(j.version)} is not one this appliance reads (1)`);
  if (typeof j.machine !== 'string' || !MACHINE.test(j.machine)) throw bad(`machine ${JSON.stringify(j.machine)} is not a machine type`);
  if (!Number.isSafeInteger(j.cpus) || (j.cpus as number) < 1 || (j.cpus as number) > 512) throw bad(`cpus ${String(j.cpus)} is not a CPU count`);
  if (!Number.isSafeInteger(j.memoryBytes) || (j.memoryBytes as number) < 1 << 20) throw bad(`memoryBytes ${String(j.memoryBytes)} is not a memory size`);
  if (!Array.isArray(j.disks) || j.disks.length === 0) throw bad('no disks');
  for (const d of j.disks as unknown[]) {
    const dd = d as Record<string, unknown>;
    if (typeof dd?.device !== 'string' || !ID.test(dd.device)) throw bad(`disk device ${JSON.stringify(dd?.device)} is not a device id`);
    if (!Number.isSafeInteger(dd.sizeBytes) || (dd.sizeBytes as number) < 0) throw bad(`disk ${dd.device}: sizeBytes is not a size`);
  }
  if (j.nics !== undefined && !Array.isArray(j.nics)) throw bad('nics is not a list');
  if (j.boot !== undefined && (typeof j.boot !== 'object' || j.boot === null)) throw bad('boot is not an object');
  return j as unknown as VmJson;
}

/** `kvm`: whether to use KVM and, if not, why (kvm-probe.ts decides; /dev/kvm existing is not enough). */
export function launchPlan(vm: VmJson, disks: LaunchDisk[], opts: { dir: string; name: string; kvm: KvmVerdict }): LaunchPlan {
  const notes: string[] = [];
  const qmpSocket = path.join(opts.dir, 'qmp.sock');
  const qgaSocket = path.join(opts.dir, 'qga.sock');
  const consoleLog = path.join(opts.dir, 'console.log');
  const kvm = opts.kvm.usable;
  const argv = [
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-name', opts.name,
    '-machine', vm.machine,
    // tb-size=64: half of TCG's default translation cache, at no measured cost (RESEARCH notes).
    ...(kvm ? ['-accel', 'kvm'] : []), '-accel', 'tcg,tb-size=64',
    '-smp', String(vm.cpus),
    '-m', `${Math.ceil(vm.memoryBytes / (1 << 20))}M`,
    '-serial', `file:${consoleLog}`,
    '-qmp', `unix:${qmpSocket},server=on,wait=off`,
    '-device', 'virtio-serial-pci,id=vmvault-vserial0',
    '-chardev', `socket,path=${qgaSocket},server=on,wait=off,id=vmvault-qga0`,
    '-device', 'virtserialport,chardev=vmvault-qga0,name=org.qemu.guest_agent.0',
  ];
  if (vm.boot?.kernel) {
    argv.push('-kernel', vm.boot.kernel);
    if (vm.boot.initrd) argv.push('-initrd', vm.boot.initrd);
    if (vm.boot.append) argv.push('-append', vm.boot.append);
  }
  const nodes: LaunchPlan['nodes'] = [];
  for (const d of disks) {
    if (!ID.test(d.device)) throw vmError('INVALID_ARGUMENT', `disk device ${JSON.stringify(d.device)} is not a device id`);
    const fileNode = `${d.device}-file`;
    const node = `${d.device}-disk`;
    const ro = d.readOnly ? ',read-only=on' : '';
    argv.push(
      '-blockdev', `driver=file,filename=${escapeOpt(d.file)},node-name=${fileNode}${ro}`,
      '-blockdev', `driver=raw,file=${fileNode},node-name=${node}${ro}`,
      '-device', `virtio-blk-pci,drive=${node},id=${d.device}`,
    );
    nodes.push({ device: d.device, node, fileNode, file: d.file });
  }
  const nics = vm.nics ?? [];
  for (const [i, n] of nics.entries()) {
    let model = n.model ?? 'virtio-net-pci';
    if (!NIC_MODELS.has(model)) {
      notes.push(`NIC ${n.id}: model ${model} is started as virtio-net-pci`);
      model = 'virtio-net-pci';
    }
    const id = ID.test(n.id) ? n.id : `net${i}`;
    const mac = n.mac && MAC.test(n.mac) ? `,mac=${n.mac}` : '';
    // romfile= : no iPXE option ROM (the package may be absent; nothing boots from the NIC).
    argv.push('-netdev', `user,id=vmvault-net${i}`, '-device', `${model},netdev=vmvault-net${i},id=${id}${mac},romfile=`);
  }
  if (nics.length > 0) notes.push(`${nics.length} NIC(s) on QEMU user networking (the production network is not reached from here)`);
  if (!kvm) notes.push(opts.kvm.reason);
  return { argv, qmpSocket, qgaSocket, consoleLog, nodes, notes };
}

/** QEMU's option syntax: a comma inside a value is written twice. */
function escapeOpt(v: string): string {
  return v.replace(/,/g, ',,');
}
