// The OVF descriptor: filled from ovf/vmvault.ovf.in, and read back by the check. Only the
// template's {{PLACEHOLDERS}} change; a placeholder left unfilled, or a value given for none,
// is an error rather than a descriptor that says "{{DATA_FILE}}".

import fs from 'node:fs';

export interface OvfDisk {
  /** 'system' or 'data': the Disk's ovf:diskId. */
  id: string;
  file: string;
  fileSize: number;
  capacity: number;
  populated: number;
}

export interface OvfValues {
  name: string;
  version: string;
  commit: string;
  memoryMiB: number;
  disks: OvfDisk[];
}

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };
const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => XML_ESCAPES[c]);

export function fillOvf(template: string, v: OvfValues): string {
  const map: Record<string, string> = { NAME: v.name, VERSION: v.version, COMMIT: v.commit, MEMORY_MIB: String(v.memoryMiB) };
  for (const d of v.disks) {
    const k = d.id.toUpperCase();
    map[`${k}_FILE`] = d.file;
    map[`${k}_FILE_SIZE`] = String(d.fileSize);
    map[`${k}_CAPACITY`] = String(d.capacity);
    map[`${k}_POPULATED`] = String(d.populated);
  }
  const used = new Set<string>();
  const out = template.replace(/\{\{([A-Z_]+)\}\}/g, (_, k: string) => {
    if (!(k in map)) throw new Error(`ovf template: no value for {{${k}}}`);
    used.add(k);
    return esc(map[k]);
  });
  const unused = Object.keys(map).filter((k) => !used.has(k));
  if (unused.length > 0) throw new Error(`ovf template: values for no placeholder: ${unused.join(', ')}`);
  return out;
}

export function loadTemplate(file: string): string {
  return fs.readFileSync(file, 'utf8');
}

export interface DescribedFile { id: string; href: string; size: number }
export interface DescribedDisk { diskId: string; fileRef: string; capacity: number; units: string; format: string }

function attrs(tag: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of tag.matchAll(/ovf:([\w]+)="([^"]*)"/g)) m.set(a[1], a[2]);
  return m;
}

/** The References/File and DiskSection/Disk entries of a descriptor (the check compares them with the tar). */
export function describedFiles(ovf: string): { files: DescribedFile[]; disks: DescribedDisk[] } {
  const files = [...ovf.matchAll(/<File\b[^>]*>/g)].map((m) => {
    const a = attrs(m[0]);
    return { id: a.get('id') ?? '', href: a.get('href') ?? '', size: Number(a.get('size')) };
  });
  const disks = [...ovf.matchAll(/<Disk\b[^>]*>/g)].map((m) => {
    const a = attrs(m[0]);
    return { diskId: a.get('diskId') ?? '', fileRef: a.get('fileRef') ?? '', capacity: Number(a.get('capacity')), units: a.get('capacityAllocationUnits') ?? 'byte', format: a.get('format') ?? '' };
  });
  return { files, disks };
}
