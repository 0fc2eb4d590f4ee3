// The `vmvault` commands over a real socket, run in-process through main() for speed: output
// (human and --json), exit codes, jobs and progress. cli-process.test.ts runs the real launcher
// as a child for what needs a process (Ctrl-C, environment, working directory). The appliance
// side is the in-memory test double.

import t from 'tap';
import { vmError } from '../src/errors.js';
import { listen } from '../src/control/listen.js';
import { runMain } from './helpers/cli-run.js';
import { TOKEN, testServer } from './helpers/control-server.js';

const s = await testServer(t);
const url = await listen(s.app, { port: 0 });
const base = ['--url', url, '--token', TOKEN];
const cli = (...args: string[]) => runMain([...base, ...args]);

t.test('share create, list, get, delete: human and --json, with exit codes', async (t) => {
  const created = await cli('share', 'create', 'vms');
  t.equal(created.code, 0, created.stderr);
  t.equal(created.stdout, 'created share vms\n');
  t.equal(created.stderr, '');

  const json = await cli('share', 'create', 'backups', '--json');
  t.equal(json.code, 0);
  t.match(JSON.parse(json.stdout), { name: 'backups', files: 0, logicalBytes: 0, snapshots: 0 });

  s.services.addFile('vms', 'web01.vmdk', 3 * 1024 ** 3);
  const list = await cli('share', 'list');
  t.equal(list.code, 0);
  const lines = list.stdout.trimEnd().split('\n');
  t.match(lines[0], /^NAME\s+FILES\s+LOGICAL\s+SNAPSHOTS\s+CREATED\s+ORIGIN$/);
  t.match(lines[1], /^backups\s+0\s+0 B\s+0\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
  t.match(lines[2], /^vms\s+1\s+3\.00 GiB\s+0\s+/);

  const listJson = await cli('share', 'list', '--json');
  t.same(JSON.parse(listJson.stdout).map((x: { name: string }) => x.name), ['backups', 'vms']);

  const dup = await cli('share', 'create', 'vms');
  t.equal(dup.code, 6, 'already exists: 6');
  t.equal(dup.stdout, '');
  t.equal(dup.stderr, 'vmvault: share vms already exists\n');

  const badName = await cli('share', 'create', '../etc');
  t.equal(badName.code, 2, 'bad name: 2');
  t.match(badName.stderr, /share name "\.\.\/etc" contains '\/'/);

  const missing = await cli('share', 'get', 'nope', '--json');
  t.equal(missing.code, 5, 'not found: 5');
  t.same(JSON.parse(missing.stdout), { error: { code: 'NOT_FOUND', message: 'no share nope' } });

  const notEmpty = await cli('share', 'delete', 'vms');
  t.equal(notEmpty.code, 6, 'not empty: 6');
  t.match(notEmpty.stderr, /vmvault: share vms has 1 file;/);

  const forced = await cli('share', 'delete', 'vms', '--force');
  t.equal(forced.code, 0);
  t.equal(forced.stdout, 'deleted share vms\n');
  const plain = await cli('share', 'delete', 'backups', '--json');
  t.same(JSON.parse(plain.stdout), { deleted: 'backups' });
  t.same([...s.services.shares.keys()], []);
});

t.test('stats: human units and ratios, and --json', async (t) => {
  await cli('share', 'create', 'stats-share');
  s.services.addFile('stats-share', 'a.vmdk', 8 * 1024 ** 3);
  const human = await cli('stats');
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^Logical data\s+8\.00 GiB {2}\(live files in 1 share and 0 snapshots\)$/m);
  t.match(human.stdout, /^Stored on disk\s+1\.00 GiB$/m);
  t.match(human.stdout, /^Dedup ratio\s+4\.0x$/m);
  t.match(human.stdout, /^Compression ratio\s+2\.0x$/m);
  t.match(human.stdout, /^Total ratio\s+8\.0x$/m);
  t.match(human.stdout, /^Reclaimable\s+unknown until the next gc$/m);
  const json = await cli('stats', '--json');
  t.equal(json.code, 0);
  t.match(JSON.parse(json.stdout), { logicalBytes: 8 * 1024 ** 3, storedBytes: 1024 ** 3, dedupRatio: 4, compressionRatio: 2, totalRatio: 8, shares: 1 });
  await cli('share', 'delete', 'stats-share', '--force');
});

t.test('snapshots, clones and fastcopy as the issue spells them', async (t) => {
  await cli('share', 'create', 'vms');
  s.services.addFile('vms', 'web01.vmdk', 1024 ** 2);
  const snap = await cli('snapshot', 'create', 'vms', 'nightly-2026-11-22');
  t.equal(snap.code, 0, snap.stderr);
  t.equal(snap.stdout, 'created snapshot vms/nightly-2026-11-22 (1 file, 1.00 MiB)\n');
  const clone = await cli('clone', 'create', 'vms', 'nightly-2026-11-22', 'vms-test');
  t.equal(clone.code, 0, clone.stderr);
  t.equal(clone.stdout, 'created share vms-test from snapshot vms/nightly-2026-11-22 (1 file)\n');
  const copy = await cli('fastcopy', 'vms/web01.vmdk', 'vms/web01-copy.vmdk');
  t.equal(copy.code, 0, copy.stderr);
  t.equal(copy.stdout, 'copied vms/web01.vmdk to vms/web01-copy.vmdk (1.00 MiB; no new space)\n');
  const cross = await cli('fastcopy', 'vms/web01.vmdk', 'vms-test/x.vmdk');
  t.equal(cross.code, 0, cross.stderr);
  t.equal(cross.stdout, 'copied vms/web01.vmdk to vms-test/x.vmdk (1.00 MiB; no new space)\n', 'across shares');
  const restore = await cli('fastcopy', 'vms/.snapshots/nightly-2026-11-22/web01.vmdk', 'vms-test/restored.vmdk');
  t.equal(restore.stdout, 'copied vms/.snapshots/nightly-2026-11-22/web01.vmdk to vms-test/restored.vmdk (1.00 MiB; no new space)\n', 'out of a snapshot');
  const missing = await cli('fastcopy', 'vms/nosuch', 'vms/y');
  t.equal(missing.code, 5);
  t.equal(missing.stderr, 'vmvault: vms/nosuch does not exist\n', 'names the share path');
  for (const f of ['x.vmdk', 'restored.vmdk']) s.services.shares.get('vms-test')!.files.delete(f);
  const list = await cli('snapshot', 'list', 'vms');
  t.match(list.stdout, /^SHARE\s+NAME\s+FILES\s+LOGICAL\s+CREATED\nvms\s+nightly-2026-11-22\s+1\s+1\.00 MiB\s+/);
  const get = await cli('snapshot', 'get', 'vms', 'nightly-2026-11-22', '--json');
  t.match(JSON.parse(get.stdout), { share: 'vms', name: 'nightly-2026-11-22', files: 1 });
  const shares = await cli('share', 'list');
  t.match(shares.stdout, /^vms-test\s+1\s+1\.00 MiB\s+0\s+.*UTC\s+vms\/nightly-2026-11-22$/m, 'the clone shows its origin');
  const del = await cli('snapshot', 'delete', 'vms', 'nightly-2026-11-22');
  t.equal(del.code, 0);
  t.match(del.stdout, /deleted snapshot vms\/nightly-2026-11-22/);
  const gone = await cli('snapshot', 'delete', 'vms', 'nightly-2026-11-22');
  t.equal(gone.code, 5);
  const badSnap = await cli('snapshot', 'create', 'vms', 'x'.repeat(4096));
  t.equal(badSnap.code, 2);
  t.match(badSnap.stderr, /snapshot name is 4096 bytes long; the limit is 128/);
  await cli('share', 'delete', 'vms', '--force');
  await cli('share', 'delete', 'vms-test', '--force');
});

t.test('gc: runs to the end, human summary and --json result', async (t) => {
  s.services.plan = { steps: 4, stepMs: 20, perStep: 256 << 20 };
  const human = await cli('gc');
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^Job\s+[0-9a-f]{12} \(gc of store\)$/m);
  t.match(human.stdout, /^State\s+succeeded$/m);
  t.match(human.stdout, /^Reclaimed\s+512 MiB net \(0 B of live segments copied forward\)$/m);
  t.match(human.stdout, /^Dead, kept\s+0 B of 512 MiB dead/m);
  t.match(human.stdout, /^Containers\s+3 removed, 1 rewritten$/m);
  const json = await cli('gc', '--json');
  t.equal(json.code, 0);
  const job = JSON.parse(json.stdout);
  t.match(job, { kind: 'gc', state: 'succeeded', progress: { done: 1 << 30, total: 1 << 30, unit: 'bytes' }, result: { reclaimedBytes: 512 << 20 } });
});

t.test('progress lines on a non-TTY stderr, every few seconds', async (t) => {
  s.services.plan = { steps: 60, stepMs: 100, perStep: 16 << 20 };
  const r = await cli('verify');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /^verify {2}\d+%  [\d.]+ MiB \/ 960 MiB/m, 'a progress line without the bar');
  t.notMatch(r.stderr, /\r/, 'no carriage returns into a log');
});

t.test('a redrawn progress bar on a terminal', async (t) => {
  s.services.plan = { steps: 10, stepMs: 100, perStep: 64 << 20 };
  const r = await runMain([...base, 'gc'], {}, true);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /\r\x1b\[2Kgc {2}\[[#.]{24}\] {2}\d+% {2}[\d.]+ MiB \/ 640 MiB/, 'bar redrawn in place');
  t.ok(r.stderr.endsWith('\r\x1b[2K'), 'the bar is cleared at the end');
  t.match(r.stdout, /^State\s+succeeded$/m, 'the summary goes to stdout');
});

t.test('a second gc is refused with the running job named; --detach returns at once', async (t) => {
  s.services.plan = { steps: 1, stepMs: 1, perStep: 1 };
  let release = () => {};
  s.services.gate = new Promise<void>((resolve) => (release = resolve));
  const first = await cli('gc', '--detach', '--json');
  t.equal(first.code, 0, first.stderr);
  const id = JSON.parse(first.stdout).job as string;
  t.match(id, /^[0-9a-f]{12}$/);
  const second = await cli('gc');
  t.equal(second.code, 6, 'conflict: 6');
  t.match(second.stderr, new RegExp(`gc job ${id} is (queued|running).*\\(job ${id}; see \`vmvault jobs ${id}\`\\)`));
  const listed = await cli('jobs');
  t.match(listed.stdout, new RegExp(`^${id}\\s+gc\\s+running\\s+`, 'm'));
  const shown = await cli('jobs', id);
  t.match(shown.stdout, /^State\s+running$/m);
  release();
  s.services.gate = undefined;
  const watched = await cli('jobs', 'watch', id);
  t.equal(watched.code, 0);
  t.match(watched.stdout, /^State\s+succeeded$/m);
});

t.test('verify: target parsing, problems give exit 7, failures map their code', async (t) => {
  s.services.plan = { steps: 1, stepMs: 1, perStep: 1 };
  await cli('share', 'create', 'vms');
  await cli('snapshot', 'create', 'vms', 'nightly');
  s.services.verifyProblems = [{ kind: 'corrupt-segment', message: 'segment 3fa1 in container 000123 at offset 81920 failed verification', container: 123 }];
  const bad = await cli('verify', 'vms/nightly', '--full');
  t.equal(bad.code, 7, 'problems found: 7');
  t.match(bad.stdout, /\(verify of snapshot vms\/nightly \(full\)\)/);
  t.match(bad.stdout, /^Problems\s+1$/m);
  t.match(bad.stdout, /corrupt-segment: segment 3fa1 in container 000123 at offset 81920/);
  s.services.verifyProblems = [];
  t.equal((await cli('verify', 'vms')).code, 0);
  t.equal((await cli('verify', 'nope')).code, 5, 'unknown share: 5');
  t.equal((await cli('verify', 'a/b/c')).code, 2);
  s.services.failNextJob = vmError('NO_SPACE', 'the data disk is full');
  const full = await cli('index', 'rebuild');
  t.equal(full.code, 8, 'NO_SPACE: 8');
  t.match(full.stdout, /^Error\s+NO_SPACE: the data disk is full$/m);
  await cli('share', 'delete', 'vms', '--force');
});

t.test('words a new operator meets: dash names, job ids, empty names, deleting a share with snapshots', async (t) => {
  const dash = await cli('share', 'create', '-dash');
  t.equal(dash.code, 0, dash.stderr);
  t.equal(dash.stdout, 'created share -dash\n', 'a name that starts with a dash is a name');
  t.equal((await cli('share', 'get', '--', '-dash')).code, 0, '-- works too');
  t.equal((await cli('share', 'delete', '-dash')).code, 0);

  const job = await cli('jobs', 'nosuch');
  t.equal(job.code, 2);
  t.equal(job.stderr, 'vmvault: jobs: "nosuch" is not a job id or one of watch, cancel (job ids are 12 hex digits; vmvault jobs lists them)\n');
  const watch = await cli('jobs', 'watch', 'nosuch');
  t.equal(watch.stderr, 'vmvault: "nosuch" is not a job id: job ids are 12 hex digits (vmvault jobs lists them)\n', "the appliance's words for a bad id");

  const empty = await cli('share', 'create', '');
  t.equal(empty.code, 2);
  t.equal(empty.stderr, 'vmvault: the share name must not be empty\n');

  const emptyToken = await runMain(['--url', url, '--token', '', 'stats']);
  t.equal(emptyToken.code, 2);
  t.match(emptyToken.stderr, /^vmvault: --token is empty/);

  await cli('share', 'create', 'kept');
  s.services.addFile('kept', 'a.vmdk', 1024);
  await cli('snapshot', 'create', 'kept', 'monday');
  await cli('snapshot', 'create', 'kept', 'tuesday');
  const plain = await cli('share', 'delete', 'kept');
  t.equal(plain.code, 6);
  t.match(plain.stderr, /monday, tuesday/, 'the refusal names the snapshots');
  const forced = await cli('share', 'delete', 'kept', '--force');
  t.equal(forced.code, 6, '--force alone is not enough');
  t.match(forced.stderr, /monday, tuesday.*--delete-snapshots/);
  t.ok(s.services.shares.has('kept'), 'nothing deleted');
  const both = await cli('share', 'delete', 'kept', '--force', '--delete-snapshots');
  t.equal(both.code, 0, both.stderr);
  t.notOk(s.services.shares.has('kept'));
});
