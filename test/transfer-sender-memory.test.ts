// The sender's memory traffic: what it hashes and compresses on the libuv pool goes into the
// codec engine's pooled payload buffers, never into a fresh buffer per call. A fresh buffer of
// several MiB per hash call is external memory to V8, and its pressure made the agent run a
// full mark-compact every ~20 MiB it sent (tools/PERFORMANCE.md, agent5).

import t from 'tap';
import { TransferConnection } from '../src/transfer/client.js';
import { sendFile } from '../src/transfer/sender.js';
import { oversizedPayloadCount } from '../src/store/codec/engine.js';
import { codecImpl } from '../src/store/native.js';
import { readFile } from './helpers/ns.js';
import { bufferSource, transferAppliance } from './helpers/transfer-appliance.js';

/** Compressible, content-defined-cuttable bytes: lines of text with a counter (no two segments alike). */
function textLike(bytes: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const line = `${i.toString(36)} the quick brown fox ${(i * 2654435761) % 1000003} jumps over ${i % 977} lazy dogs\n`;
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

t.test('a full send compresses into the pooled payload buffers only', { skip: codecImpl !== 'native' ? 'the sender hashes on the pool only with the addon' : false }, async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('host-a');
  const conn = await TransferConnection.open({ url: a.url, token });
  t.teardown(() => conn.close());
  // 40 MiB: several 8 MiB batches, each over two or more of the chunk stream's 8 MiB slabs.
  const data = textLike(40 << 20);
  const before = oversizedPayloadCount();
  const r = await sendFile(conn, bufferSource(data), { share: 'vms', path: 'disk.raw', size: data.length });
  t.equal(oversizedPayloadCount() - before, 0, 'no hash call needed a fresh payload buffer');
  t.ok(r.segmentsSent > 0 && r.segmentBytesSent < data.length / 2, `sent ${r.segmentsSent} of ${r.segments} segments, ${r.segmentBytesSent} compressed bytes`);
  t.ok((await readFile(a.ns, '/vms/disk.raw')).equals(data), 'reads back identical');
});
