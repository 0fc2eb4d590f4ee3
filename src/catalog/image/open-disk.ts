// Format detection: qcow2 and VMDK by their magic, anything else is a raw disk (which keeps the
// file's path, so Sleuth Kit can read its partitions at an offset).

import type { ByteSource, Disk } from '../source.js';
import { isQcow2, openQcow2, refusedDisk } from './qcow2.js';
import { isVmdkDescriptor, isVmdkSparse, openVmdk } from './vmdk.js';

export async function openDiskImpl(file: ByteSource): Promise<Disk> {
  const head = await file.read(0, 512);
  if (isQcow2(head)) return openQcow2(file, head);
  if (isVmdkSparse(head)) return openVmdk(file, head);
  if (isVmdkDescriptor(head)) {
    return refusedDisk('vmdk', 0, 'vmdk: a descriptor file whose data lives in other files (flat/split); only monolithic sparse and streamOptimized images are read');
  }
  const raw: Disk = {
    format: 'raw',
    size: file.size,
    read: (o, l) => file.read(o, l),
    ...(file.path !== undefined ? { path: file.path, pathOffset: file.pathOffset ?? 0 } : {}),
  };
  return raw;
}
