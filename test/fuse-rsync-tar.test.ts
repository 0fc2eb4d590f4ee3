// rsync, touch, cp -p and tar through the mount keep bytes, modes and times. These tools set
// times with utimensat, one time or both (fuse-native, the binding before issue 16, mangled
// both cases): a copy that comes back with the wrong mtimes fails here.

import t from 'tap';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { checkedTool } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';
import { describeTree, makeVariedTree, treeDiff, type TreeDescription } from './helpers/tree.js';

const tool = checkedTool(120_000);

async function sameTree(tt: TestT, label: string, want: TreeDescription, dir: string): Promise<void> {
  const got = await describeTree(dir);
  const diff = treeDiff(want, got, 'source', label);
  tt.same(diff, [], `${label}: every entry has the source's type, mode, size, bytes, link target and mtime (${Object.keys(want).length} entries)`);
}

const utc = (s: string) => Date.parse(s.replace(' ', 'T') + 'Z');

t.test('rsync, touch, cp -p and tar through the mount', async (t) => {
  const dir = tmpDir(t);
  const src = path.join(dir, 'src');
  await fs.mkdir(src);
  const made = await makeVariedTree(src);
  const want = await describeTree(src);
  t.comment(`source tree: ${made.entries} entries, ${(made.bytes / 2 ** 20).toFixed(1)} MiB`);

  let app: Appliance = await startAppliance(t, dir);
  t.equal((await app.api('POST', '/shares', { name: 'data' })).status, 201, 'share data created');
  const share = () => path.join(app.mount, 'data');

  // rsync in, and back out to a third directory.
  await tool(t, 'rsync', ['-a', `${src}/`, `${share()}/tree/`]);
  await sameTree(t, 'rsync -a into the mount', want, path.join(share(), 'tree'));
  const again = await tool(t, 'rsync', ['-a', '-i', `${src}/`, `${share()}/tree/`]);
  t.equal(again.stdout.trim(), '', 'a second rsync -a finds nothing to transfer (sizes and mtimes match as rsync sees them)');
  const out = path.join(dir, 'out');
  await tool(t, 'rsync', ['-a', `${share()}/tree/`, `${out}/`]);
  await sameTree(t, 'rsync -a out of the mount', want, out);

  // touch changes only the time it is asked to change.
  const f = path.join(share(), 'touched');
  await fs.writeFile(f, 'times');
  // touch -d passes exact nanoseconds; Node's utimes goes through a double and may land a
  // nanosecond short of the millisecond, which the mount's millisecond clock then truncates.
  await tool(t, 'touch', ['-d', '1999-09-09 09:09:09.009', f]);
  const atime0 = utc('1999-09-09 09:09:09.009');
  await tool(t, 'touch', ['-m', '-d', '1998-08-08 08:08:08.008', f]);
  const mtime0 = utc('1998-08-08 08:08:08.008');
  let st = await fs.stat(f);
  t.same([st.atimeMs, st.mtimeMs], [atime0, mtime0], 'touch -d, then touch -m -d: atime and mtime each hold their own value');
  await tool(t, 'touch', ['-m', '-d', '2001-02-03 04:05:06.789', f]);
  st = await fs.stat(f);
  t.same([st.atimeMs, st.mtimeMs], [atime0, utc('2001-02-03 04:05:06.789')], 'touch -m -d changes mtime (to the millisecond) and leaves atime');
  await tool(t, 'touch', ['-a', '-d', '2002-03-04 05:06:07', f]);
  st = await fs.stat(f);
  t.same([st.atimeMs, st.mtimeMs], [utc('2002-03-04 05:06:07'), utc('2001-02-03 04:05:06.789')], 'touch -a -d changes atime and leaves mtime');
  t.equal(await fs.readFile(f, 'utf8'), 'times', 'touch left the bytes alone');

  // cp -p keeps mode and times, in and out.
  await fs.mkdir(path.join(share(), 'cp'));
  for (const rel of ['docs/readme.txt', 'bin/readonly', 'bin/tool']) {
    const name = path.basename(rel);
    await tool(t, 'cp', ['-p', path.join(src, rel), path.join(share(), 'cp', name)]);
    await tool(t, 'cp', ['-p', path.join(share(), 'cp', name), path.join(dir, `cp-back-${name}`)]);
    const w = want[rel];
    for (const [where, p] of [['in the mount', path.join(share(), 'cp', name)], ['copied back out', path.join(dir, `cp-back-${name}`)]] as const) {
      const d = (await describeTree(p))[''];
      t.same(d, w, `cp -p ${rel}, ${where}: mode ${w.mode}, mtime ${new Date(w.mtimeMs).toISOString()}, same bytes`);
    }
  }

  // tar: a tree read through the mount into an archive in the mount, extracted outside; and an
  // archive of the source extracted into the mount. pax keeps sub-second mtimes.
  await tool(t, 'tar', ['--format=posix', '-C', path.join(share(), 'tree'), '-cf', path.join(share(), 'tree.tar'), '.']);
  const x1 = path.join(dir, 'untar-out');
  await fs.mkdir(x1);
  await tool(t, 'tar', ['-C', x1, '-xf', path.join(share(), 'tree.tar')]);
  await sameTree(t, 'tar -c through the mount, tar -x outside', want, x1);
  const plainTar = path.join(dir, 'src.tar');
  await tool(t, 'tar', ['--format=posix', '-C', src, '-cf', plainTar, '.']);
  await fs.mkdir(path.join(share(), 'untar'));
  await tool(t, 'tar', ['-C', path.join(share(), 'untar'), '-xf', plainTar]);
  await sameTree(t, 'tar -x into the mount', want, path.join(share(), 'untar'));
  const listed = await tool(t, 'tar', ['-tvf', path.join(share(), 'tree.tar')]);
  t.equal(listed.stdout.trim().split('\n').length, Object.keys(want).length, 'the archive in the mount lists every entry');

  t.equal(await app.stop(), 0, 'the appliance stops cleanly');
  app = await startAppliance(t, dir);
  await sameTree(t, 'after a restart, the rsync copy', want, path.join(share(), 'tree'));
  await sameTree(t, 'after a restart, the tar extraction', want, path.join(share(), 'untar'));
  st = await fs.stat(f);
  t.same([st.atimeMs, st.mtimeMs], [utc('2002-03-04 05:06:07'), utc('2001-02-03 04:05:06.789')], 'after a restart, the touched times');
  const noop = await tool(t, 'rsync', ['-a', '-i', `${src}/`, `${share()}/tree/`]);
  t.equal(noop.stdout.trim(), '', 'after a restart rsync still finds nothing to transfer');
  t.equal(await app.stop(), 0, 'the appliance stops cleanly again');
});
