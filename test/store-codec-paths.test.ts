// The store's two codec paths write containers each other reads: the addon (BLAKE3 and LZ4 in
// native/, batches on the thread pool) and the fallback (@napi-rs/blake-hash, lz4-napi, codec
// worker threads), and the TypeScript cut loop with either. A store written by one path is
// read, extended and verified by the other.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { codecImpl, nativeCodec } from '../src/store/native.js';
import { SegmentStore } from '../src/store/store.js';
import { Segmenter, DEFAULT_CHUNKER, segmenterImpl } from '../src/store/segmenter/segmenter.js';
import { decodeVersion, encodeVersion } from '../src/store/tree/version.js';
import { content } from './helpers/codec-path-child.js';
import { Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'codec-path-child.js');

function runChild(env: Record<string, string>, args: string[]): { codec: string; segmenter: string; readBack: boolean; version: string } {
  const e = { ...process.env, ...env };
  delete e.NODE_OPTIONS;
  const r = spawnSync(process.execPath, [child, ...args], { env: e, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

t.test('stores cross between the native and the fallback codec', async (t) => {
  const dir = tmpDir(t);
  let store = await SegmentStore.open(dir);
  const a = await store.writeBuffer(content(1));
  await store.commit([], a.deps);
  await store.close();
  t.comment(`parent: codec ${codecImpl}, segmenter ${segmenterImpl}`);

  let prev = { version: encodeVersion(a.version).toString('hex'), seed: 1 };
  const seen: string[] = [];
  const written = new Map<number, string>();
  for (const [label, env, seed] of [
    ['no native code', { VMVAULT_NO_NATIVE: '1' }, 2],
    ['native cut, fallback codec', { VMVAULT_NO_NATIVE_CODEC: '1' }, 3],
  ] as const) {
    const out = runChild(env, [dir, prev.version, String(prev.seed), String(seed)]);
    seen.push(`${out.codec}/${out.segmenter}`);
    t.equal(out.codec, 'js', `${label}: the child ran the fallback codec`);
    t.ok(out.readBack, `${label}: the child read back what was written before`);
    prev = { version: out.version, seed };
    written.set(seed, out.version);
  }

  store = await SegmentStore.open(dir);
  t.teardown(() => store.close());
  const last = decodeVersion(Buffer.from(prev.version, 'hex'));
  t.ok((await store.read(last, 0, last.size)).equals(content(prev.seed)), 'the parent reads what the last child wrote');
  t.ok((await store.read(a.version, 0, a.version.size)).equals(content(1)), 'and still what it wrote first');
  const again = await store.writeBuffer(content(2));
  const byFallback = decodeVersion(Buffer.from(written.get(2)!, 'hex'));
  t.ok(again.version.root.equals(byFallback.root), 'both paths give the same bytes the same root (same cuts, same fingerprints)');
  const report = await store.verify({ full: true });
  t.same(report.problems, [], `full verify over containers of both paths (${seen.join(', ')})`);
});

t.test('the cut on the thread pool cuts where the synchronous one does', { skip: !nativeCodec }, async (t) => {
  const rng = new Rng(5);
  const data = Buffer.concat([rng.bytes(3 << 20), Buffer.alloc(1 << 20), rng.bytes(2 << 20)]);
  const a = new Segmenter(DEFAULT_CHUNKER, 'native');
  const b = new Segmenter(DEFAULT_CHUNKER, 'native');
  const sync: number[] = [];
  const async: number[] = [];
  for (let at = 0; at < data.length; ) {
    const n = Math.min(data.length - at, rng.range(1, 700000));
    for (const c of a.push(data.subarray(at, at + n))) sync.push(at + c);
    for (const c of await b.pushAsync(data.subarray(at, at + n))) async.push(at + c);
    at += n;
  }
  t.same(async, sync, `${sync.length} cuts identical`);
});
