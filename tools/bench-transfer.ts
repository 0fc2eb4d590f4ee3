// npm run bench:transfer [-- --images DIR] [--work DIR]   (node dist/tools/bench-transfer.js)
// The transfer protocol's figures on the sample VM images (../shared/testdata/make-vm-images.sh;
// default /work/vmimages, else $VMVAULT_BENCH_IMAGES): a real store, namespace and control plane
// in this process on loopback HTTP, the sender as an agent uses it (also in this process).
//
// Run A, default scope (an ordinary agent token): vm1-day1 full into share vm1, a restore point,
// vm1-day2 full into the same path, then vm2-day1 into share vm2. Run B, a fresh store and a
// trusted token (store-wide answers): the same three sends. Figures, one JSON line each:
//   agent.day2.wire_vs_new          run A, day 2: bytes on the wire (both ways) / (the store's
//                                   growth in stored bytes for day 2, i.e. its new unique segments
//                                   compressed, + the fingerprint traffic); goal <= 1.1
//   agent.fingerprint_bytes_per_gib run A, all sends: query frames and replies per GiB read
//   transfer.scope.vm2_extra_bytes  wire bytes of vm2-day1 with the default scope minus with
//                                   store-wide answers: what the confirmation-attack defence costs
//   transfer.scope.vm2_extra_ratio  the same as a ratio (default / store-wide wire bytes)
// Notes (per send: bytes read, sent, segments) go to stderr.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApplianceServices } from '../src/appliance-services.js';
import { AgentTokens } from '../src/control/agent-tokens.js';
import { listen } from '../src/control/listen.js';
import { buildServer } from '../src/control/server.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { TransferConnection } from '../src/transfer/client.js';
import { TransferReceiver } from '../src/transfer/receiver.js';
import { type ReadSource, type SendReport, sendFile } from '../src/transfer/sender.js';

const GiB = 2 ** 30;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const images = arg('--images') ?? process.env.VMVAULT_BENCH_IMAGES ?? '/work/vmimages';
const workRoot = arg('--work') ?? os.tmpdir();
const emit = (figure: string, value: number, unit: string): void => void process.stdout.write(JSON.stringify({ figure, value: Number(value.toFixed(4)), unit }) + '\n');
const note = (l: string): void => void process.stderr.write(`bench:transfer: ${l}\n`);

function fileSource(file: string): ReadSource & { close(): void } {
  const fd = fs.openSync(file, 'r');
  const size = fs.fstatSync(fd).size;
  return {
    size,
    async read(offset: number, length: number): Promise<Buffer> {
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const n = await new Promise<number>((res, rej) => fs.read(fd, buf, got, length - got, offset + got, (err, b) => (err ? rej(err) : res(b))));
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got);
    },
    close: () => fs.closeSync(fd),
  };
}

interface RunResult {
  day1: SendReport;
  day2: SendReport;
  vm2: SendReport;
  day2StoredGrowth: number;
}

async function runOnce(label: string, trusted: boolean): Promise<RunResult> {
  const dir = fs.mkdtempSync(path.join(workRoot, `vmvault-bench-transfer-${label}-`));
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: note });
  const receiver = new TransferReceiver(ns, { log: note });
  const svc = new ApplianceServices(ns);
  svc.transfer = receiver;
  const tokens = AgentTokens.inMemory();
  const app = await buildServer(svc, { token: 'bench-admin-token-0123456789', agentTokens: tokens });
  const url = await listen(app, { host: '127.0.0.1', port: 0 });
  try {
    const { token } = await tokens.create('bench', { trusted });
    const conn = await TransferConnection.open({ url, token });
    const send = async (image: string, share: string): Promise<SendReport> => {
      const src = fileSource(path.join(images, image));
      const t0 = process.hrtime.bigint();
      try {
        const r = await sendFile(conn, src, { share, path: 'vda.raw', size: src.size });
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        note(`${label} ${image} -> ${share}: ${s.toFixed(1)} s, read ${r.bytesRead}, wire ${r.bytesSent}, fingerprints ${r.fingerprintBytes}, segments ${r.segmentsSent}/${r.segments} sent (${r.segmentBytesSent} payload bytes), zeros ${r.zeroBytes}`);
        return r;
      } finally {
        src.close();
      }
    };
    await ns.shares.create('vm1');
    await ns.shares.create('vm2');
    const day1 = await send('vm1-day1.raw', 'vm1');
    await ns.snapshots.create('vm1', 'day1');
    const before = (await store.stats()).storedBytes;
    const day2 = await send('vm1-day2.raw', 'vm1');
    await store.sync();
    const day2StoredGrowth = (await store.stats()).storedBytes - before;
    const vm2 = await send('vm2-day1.raw', 'vm2');
    await conn.close();
    return { day1, day2, vm2, day2StoredGrowth };
  } finally {
    await app.close();
    await receiver.close();
    await ns.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const a = await runOnce('scoped', false);
const b = await runOnce('storewide', true);
note(`day 2: store grew by ${a.day2StoredGrowth} bytes; the sender sent ${a.day2.segmentBytesSent} payload bytes`);
emit('agent.day2.wire_vs_new', a.day2.bytesSent / (a.day2StoredGrowth + a.day2.fingerprintBytes), 'ratio');
const read = a.day1.bytesRead + a.day2.bytesRead + a.vm2.bytesRead;
const fpBytes = a.day1.fingerprintBytes + a.day2.fingerprintBytes + a.vm2.fingerprintBytes;
emit('agent.fingerprint_bytes_per_gib', fpBytes / (read / GiB), 'bytes/GiB');
emit('transfer.scope.vm2_extra_bytes', a.vm2.bytesSent - b.vm2.bytesSent, 'bytes');
emit('transfer.scope.vm2_extra_ratio', a.vm2.bytesSent / b.vm2.bytesSent, 'ratio');
