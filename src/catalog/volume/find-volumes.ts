import type { Disk, Volume } from '../source.js';
import { vmError } from '../../errors.js';
export async function findVolumesImpl(_disk: Disk): Promise<Volume[]> { throw vmError('NOT_SUPPORTED', 'findVolumes: not yet'); }
