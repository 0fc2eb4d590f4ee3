// The read-descriptor cache of container files: a descriptor handed out by acquire() stays
// open, and belongs to its container, until released, also when handing it out overflows the
// cache and idle descriptors are closed.

import t from 'tap';
import fs from 'node:fs';
import { ContainerFiles } from '../src/store/container/files.js';
import { decodeHeader, encodeHeader, HEADER_BYTES } from '../src/store/container/format.js';
import { tmpDir } from './helpers/tmpdir.js';

const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 2));

t.test('every acquired descriptor reads its own container while the cache overflows', async (t) => {
  const files = new ContainerFiles(tmpDir(t));
  const N = 600; // more than twice the cache's bound, so it overflows again and again
  for (let id = 1; id <= N; id++) {
    await files.prepare(id);
    fs.writeFileSync(files.pathOf(id), Buffer.concat([encodeHeader(id, 0), Buffer.alloc(64, id & 0xff)]));
  }
  t.teardown(() => files.closeAll());
  let wrong = 0;
  const notes: string[] = [];
  for (let id = 1; id <= N; id++) {
    const fd = await files.acquire(id);
    await tick(); // a close scheduled behind the caller's back would have happened by now
    const h = Buffer.alloc(HEADER_BYTES);
    try {
      fs.readSync(fd, h, 0, HEADER_BYTES, 0);
      const got = decodeHeader(h, `container ${id}`).id;
      if (got !== id) {
        wrong++;
        if (notes.length < 3) notes.push(`container ${id}: descriptor ${fd} reads container ${got}`);
      }
    } catch (err) {
      wrong++;
      if (notes.length < 3) notes.push(`container ${id}: ${(err as Error).message}`);
    }
    files.release(id);
  }
  t.equal(wrong, 0, `every descriptor read its own container ${notes.join('; ')}`);
});
