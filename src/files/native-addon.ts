// The native addon (native/, vmvault_native.node) as files/ uses it: its writer thread
// (file-writer.ts) and its start of disk writes (writeback.ts). Loaded once, where
// src/store/native.ts finds the same addon (that layer keeps its own loader: files/ imports
// only errors/). undefined without the build or with VMVAULT_NO_NATIVE=1: each user falls back
// to ordinary writes, and checks that the functions it needs are there (an older build).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function load(): Record<string, unknown> | undefined {
  if (process.env.VMVAULT_NO_NATIVE === '1') return undefined;
  // dist/src/files -> repository root
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  try {
    const file = process.env.VMVAULT_NATIVE_ADDON || path.join(root, 'native', 'build', 'Release', 'vmvault_native.node');
    return createRequire(import.meta.url)(file) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The addon's exports, or undefined where it is not built (or turned off). */
export const filesAddon = load();
