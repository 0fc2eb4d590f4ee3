// Where a request's time goes between libfuse and JavaScript (native/src/fuse3/reqtime.c,
// LlSession.reqTimes), through the real kernel: a small in-memory file system whose writes are
// held DELAY_MS before their answer. Each write of a child process must be counted once under
// "write", with at least DELAY_MS in the handler's share (handed -> answered) and its total in
// the histogram; kinds the child never caused are absent. This process serves the mount and
// never touches it: the child does, with a deadline.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fuse3Available } from '../src/fuse/ll/session.js';
import { LlMemfs, mountLlMemfs } from './helpers/ll-memfs.js';

const DELAY_MS = 40;
const WRITES = 5;

function sh(script: string): Promise<{ code: number; stderr: string }> {
  return new Promise((done) => {
    execFile('sh', ['-c', script], { timeout: 60_000 }, (err, _out, stderr) => {
      done({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0, stderr: String(stderr) });
    });
  });
}

const why = !existsSync('/dev/fuse') ? 'no /dev/fuse' : process.getuid?.() !== 0 ? 'needs root' : !fuse3Available() ? 'the fuse3 addon is not built (libfuse3-dev)' : '';
t.test('time per request kind, from libfuse receipt to the answer', { skip: why || false }, async (t) => {
  const { dir, session } = await mountLlMemfs(t, new LlMemfs({ delayMs: DELAY_MS }));
  t.same(session.reqTimes, {}, 'nothing answered yet');
  // One write request per dd block: no write-back cache on this mount.
  const r = await sh(`dd if=/dev/zero of=${dir}/f bs=4096 count=${WRITES} status=none`);
  t.equal(r.code, 0, r.stderr);
  const times = session.reqTimes;
  const w = times.write;
  t.ok(w, 'writes are counted');
  if (!w) return;
  t.equal(w.n, WRITES, `${WRITES} writes, each counted once`);
  t.ok(w.jsMs >= WRITES * DELAY_MS * 0.95, `the handler's share holds the ${DELAY_MS} ms each write was held (${w.jsMs.toFixed(1)} ms)`);
  t.ok(w.slotMs >= 0 && w.waitMs >= 0 && w.waitMs < w.jsMs, `receipt -> queued ${w.slotMs.toFixed(3)} ms, queued -> handed ${w.waitMs.toFixed(3)} ms`);
  t.ok(w.maxMs >= DELAY_MS * 0.95 && w.maxMs * WRITES >= w.slotMs + w.waitMs + w.jsMs - 1e-6, `the longest (${w.maxMs.toFixed(1)} ms) bounds the mean`);
  t.equal(w.hist.reduce((a, b) => a + b, 0), WRITES, 'every write is in the histogram');
  // Bucket k holds [2^(k-1), 2^k) us: every write took at least ~DELAY_MS.
  const bucket = Math.floor(Math.log2(DELAY_MS * 1000 * 0.95)) + 1;
  t.equal(w.hist.length, 24, '24 buckets');
  t.equal(w.hist.slice(0, bucket).reduce((a, b) => a + b, 0), 0, `none below ${2 ** (bucket - 1)} us`);
  t.ok(times.create && times.create.n >= 1, 'the create is counted under its own kind');
  t.notOk(times.fsync || times.read || times.unlink, 'kinds the child never caused are absent');
});
