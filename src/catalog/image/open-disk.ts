import type { ByteSource, Disk } from '../source.js';
import { vmError } from '../../errors.js';
export async function openDiskImpl(_file: ByteSource): Promise<Disk> { throw vmError('NOT_SUPPORTED', 'openDisk: not yet'); }
