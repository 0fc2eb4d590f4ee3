// Child for test/store-codec-paths.test.ts: runs with the addon's codec switched off by the
// environment (VMVAULT_NO_NATIVE or VMVAULT_NO_NATIVE_CODEC), reads what the parent wrote,
// writes more, and reports on stdout.

import { SegmentStore } from '../../src/store/store.js';
import { codecImpl } from '../../src/store/native.js';
import { segmenterImpl } from '../../src/store/segmenter/segmenter.js';
import { decodeVersion, encodeVersion } from '../../src/store/tree/version.js';
import { generate, Rng } from './data.js';

export function content(seed: number): Buffer {
  const rng = new Rng(seed);
  return Buffer.concat([generate(rng, 'text', 3 << 20), generate(rng, 'sparse', 1 << 20), rng.bytes(1 << 20), generate(rng, 'zeros', 300000)]);
}

async function main(): Promise<void> {
  const [dir, versionHex, seedA, seedB] = process.argv.slice(2);
  const store = await SegmentStore.open(dir);
  try {
    const a = decodeVersion(Buffer.from(versionHex, 'hex'));
    const readBack = (await store.read(a, 0, a.size)).equals(content(Number(seedA)));
    const r = await store.writeBuffer(content(Number(seedB)));
    await store.commit([], r.deps);
    process.stdout.write(JSON.stringify({ codec: codecImpl, segmenter: segmenterImpl, readBack, version: encodeVersion(r.version).toString('hex') }) + '\n');
  } finally {
    await store.close();
  }
}

if (process.argv[1]?.endsWith('codec-path-child.js')) await main();
