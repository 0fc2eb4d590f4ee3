// The fingerprint-first protocol end to end over HTTP on loopback: a real store and namespace,
// the receiver behind the control plane, the sender as agents use it.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { TransferConnection } from '../src/transfer/client.js';
import { sendFile } from '../src/transfer/sender.js';
import { readFile } from './helpers/ns.js';
import { ADMIN, bufferSource, transferAppliance } from './helpers/transfer-appliance.js';

t.test('a full send reads back identical; the second send of the same file sends no segment data', async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('host-a');
  const conn = await TransferConnection.open({ url: a.url, token });
  t.teardown(() => conn.close());
  const data = Buffer.concat([randomBytes(3 << 20), Buffer.alloc(2 << 20), randomBytes(1 << 20)]);
  const r1 = await sendFile(conn, bufferSource(data), { share: 'vms', path: 'web01/vda.raw', size: data.length });
  t.ok((await readFile(a.ns, '/vms/web01/vda.raw')).equals(data), 'reads back identical');
  t.ok(r1.segmentsSent > 0 && r1.segmentsSent === r1.segments, `first send: ${r1.segmentsSent} of ${r1.segments} segments sent`);
  t.ok(r1.zeroBytes >= 1 << 20, 'the zero run crossed as an extent');
  const r2 = await sendFile(conn, bufferSource(data), { share: 'vms', path: 'web01/vda.raw', size: data.length });
  t.equal(r2.segmentsSent, 0, 'second send: no segment data');
  t.equal(r2.segmentBytesSent, 0);
  t.ok(r2.bytesSent < data.length / 50, `second send: ${r2.bytesSent} bytes on the wire for ${data.length}`);
  t.ok((await readFile(a.ns, '/vms/web01/vda.raw')).equals(data));
  void ADMIN;
});
