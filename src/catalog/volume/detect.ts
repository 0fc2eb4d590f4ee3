// Filesystem detection by magic numbers at their fixed places (what blkid looks at).

import type { ByteSource, FsKind } from '../source.js';

export interface Detected { fs: FsKind; label?: string; lvm?: boolean }

export async function detectFs(src: ByteSource): Promise<Detected> {
  const b = await src.read(0, 4096 + 1024);
  if (b.length < 512) return { fs: 'unknown' };
  const ascii = (at: number, len: number) => b.subarray(at, at + len).toString('latin1');
  if (ascii(0, 6) === 'LUKS\xba\xbe' || ascii(0, 6) === 'SKUL\xba\xbe') return { fs: 'encrypted', label: 'LUKS' };
  if (ascii(3, 8) === '-FVE-FS-') return { fs: 'encrypted', label: 'BitLocker' };
  if (ascii(0, 4) === 'XFSB') return { fs: 'xfs', label: b.subarray(108, 120).toString('latin1').replace(/\0.*$/s, '') };
  if (ascii(3, 8) === 'NTFS    ') return { fs: 'ntfs' };
  if (ascii(3, 8) === 'EXFAT   ') return { fs: 'exfat' };
  for (let s = 0; s < 4 && s * 512 + 32 <= b.length; s++) {
    if (ascii(s * 512, 8) === 'LABELONE' && ascii(s * 512 + 24, 8) === 'LVM2 001') return { fs: 'unknown', lvm: true };
  }
  if (b.length >= 1024 + 128 && b.readUInt16LE(1024 + 56) === 0xef53) {
    return { fs: 'ext', label: b.subarray(1024 + 120, 1024 + 136).toString('latin1').replace(/\0.*$/s, '') };
  }
  if (b.length >= 4096 && ascii(4096 - 10, 10) === 'SWAPSPACE2' || ascii(4096 - 10, 10) === 'SWAP-SPACE') return { fs: 'swap' };
  if (b[510] === 0x55 && b[511] === 0xaa) {
    const bps = b.readUInt16LE(11);
    const spc = b[13];
    const fatLabel = ascii(54, 5) === 'FAT12' || ascii(54, 5) === 'FAT16' || ascii(82, 5) === 'FAT32';
    if (fatLabel || ([512, 1024, 2048, 4096].includes(bps) && spc > 0 && (spc & (spc - 1)) === 0 && b[16] >= 1 && b[16] <= 2 && b.readUInt16LE(14) > 0)) {
      return { fs: 'fat' };
    }
  }
  return { fs: 'unknown' };
}
