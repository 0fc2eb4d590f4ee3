// Child for store-power.test.ts: opens (creating) a store in argv[2], writes one key with a
// synced LevelDB batch (acknowledged), says 'ready' and waits to be killed: the parent then
// cuts the power under it.
import { SegmentStore } from '../../src/store/store.js';
import { writeBatch } from '../../src/kv/db.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: store-power-child.js <store dir>');
const store = await SegmentStore.open(dir);
await writeBatch(store.db, [{ type: 'put', key: Buffer.from('power-probe'), value: Buffer.from('acknowledged') }], true);
process.send?.('ready');
setInterval(() => {}, 1 << 30);
