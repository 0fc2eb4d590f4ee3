// A random sequence of POSIX operations applied to a share of the real mount and to a plain
// directory gives the same outcomes (success or the same errno), and the same tree and bytes,
// before and after the appliance restarts.

import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startAppliance } from './helpers/appliance.js';
import { generate, Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

type Outcome = string;

// Hard links are left to their own test by default: the kernel caches each name of a file
// separately (libfuse's high-level API gives every path its own node), so right after a write
// through one name another name can show old attributes (nlink) or pages (auto_cache keeps them
// while the cached size and mtime look unchanged) for up to the attribute timeout.
// VMVAULT_MODEL_LINKS=1 adds them; it fails on exactly that until the low-level binding lands.
const LINKS = process.env.VMVAULT_MODEL_LINKS === '1';

async function outcome(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    await fn();
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

interface Snapshot {
  [rel: string]: string;
}

/** The paths of `ref` whose file (inode) had its times set by utimes and not written since. */
async function explicitPaths(ref: string, inos: Set<number>): Promise<Set<string>> {
  const out = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fs.readdir(path.join(ref, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) await walk(r);
      else if (e.isFile() && inos.has((await fs.stat(path.join(ref, r))).ino)) out.add(r);
    }
  };
  await walk('');
  return out;
}

async function describeTree(root: string, explicitMtimes: Set<string>): Promise<Snapshot> {
  const out: Snapshot = {};
  const walk = async (rel: string): Promise<void> => {
    const entries = (await fs.readdir(path.join(root, rel))).filter((n) => !(rel === '' && n === '.snapshots')).sort();
    for (const name of entries) {
      const r = path.join(rel, name);
      const full = path.join(root, r);
      const st = await fs.lstat(full);
      const perm = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[r] = `link ${await fs.readlink(full)}`;
      else if (st.isDirectory()) {
        out[r] = `dir ${perm}`;
        await walk(r);
      } else {
        const sha = createHash('sha256').update(await fs.readFile(full)).digest('hex').slice(0, 16);
        const mt = explicitMtimes.has(r) ? ` mtime ${Math.floor(st.mtimeMs)}` : '';
        out[r] = `file ${perm} ${st.size} ${sha} nlink ${st.nlink}${mt}`;
      }
    }
  };
  await walk('');
  return out;
}

t.test('random POSIX operations: mount and plain directory agree', async (t) => {
  const dir = tmpDir(t);
  const ref = path.join(dir, 'ref');
  await fs.mkdir(ref);
  let app = await startAppliance(t, dir);
  t.equal((await app.api('POST', '/shares', { name: 'm' })).status, 201, 'share created');
  const rng = new Rng(4242);
  const dirs = new Set<string>(['']);
  const files = new Set<string>();
  // Files (by their inode in the plain directory) whose mtime was set by utimes: a property of
  // the file, shared by all its names, not of one path.
  const explicit = new Set<number>();
  const refIno = async (p: string): Promise<number> => (await fs.stat(path.join(ref, p))).ino;
  const pickDir = () => rng.pick([...dirs]);
  const pickFile = () => (files.size ? rng.pick([...files]) : 'nofile');
  const anyPath = () => (rng.int(3) === 0 ? pickDir() : pickFile());
  const fresh = () => path.join(pickDir(), `n${rng.int(40)}`);
  let mismatches = 0;
  const both = async (label: string, op: (root: string) => Promise<unknown>, after?: (ok: boolean) => unknown): Promise<void> => {
    const root = path.join(app.mount, 'm');
    const a = await outcome(() => op(root));
    const b = await outcome(() => op(ref));
    if (a !== b) {
      mismatches++;
      t.fail(`${label}: mount says ${a}, plain directory says ${b}`);
    }
    await after?.(b === 'ok');
  };
  for (let i = 0; i < 700; i++) {
    const k = rng.int(15);
    if (k === 0) {
      const p = fresh();
      await both(`mkdir ${p}`, (r) => fs.mkdir(path.join(r, p), { mode: 0o750 }), (ok) => ok && dirs.add(p));
    } else if (k <= 3) {
      const p = rng.int(2) ? fresh() : pickFile();
      const data = generate(rng, rng.pick(['random', 'text', 'sparse', 'zeros'] as const), rng.int(300000));
      await both(`writeFile ${p}`, (r) => fs.writeFile(path.join(r, p), data), async (ok) => {
        if (ok) {
          files.add(p);
          explicit.delete(await refIno(p)); // also a new file on a reused inode number
        }
      });
    } else if (k <= 5) {
      const p = pickFile();
      const off = rng.int(400000);
      const data = generate(rng, rng.pick(['random', 'text'] as const), rng.range(1, 100000));
      await both(`write ${p}@${off}`, async (r) => {
        const h = await fs.open(path.join(r, p), 'r+');
        try {
          await h.write(data, 0, data.length, off);
        } finally {
          await h.close();
        }
      }, async (ok) => ok && explicit.delete(await refIno(p)));
    } else if (k === 6) {
      const p = pickFile();
      const size = rng.int(500000);
      await both(`truncate ${p} ${size}`, (r) => fs.truncate(path.join(r, p), size), async (ok) => ok && explicit.delete(await refIno(p)));
    } else if (k === 7) {
      const from = anyPath();
      const to = rng.int(2) ? fresh() : anyPath();
      if (from === '' || to === '' || to.startsWith(from + '/')) continue;
      await both(`rename ${from} ${to}`, (r) => fs.rename(path.join(r, from), path.join(r, to)), (ok) => {
        if (!ok) return;
        const move = (set: Set<string>) => {
          for (const x of [...set]) {
            if (x === from || x.startsWith(from + '/')) {
              set.delete(x);
              set.add(to + x.slice(from.length));
            } else if (x === to || x.startsWith(to + '/')) set.delete(x);
          }
        };
        move(files);
        move(dirs);
        dirs.add('');
      });
    } else if (k === 8) {
      const p = pickFile();
      await both(`unlink ${p}`, (r) => fs.unlink(path.join(r, p)), (ok) => ok && files.delete(p));
    } else if (k === 9) {
      const p = pickDir();
      if (p === '') continue;
      await both(`rmdir ${p}`, (r) => fs.rmdir(path.join(r, p)), (ok) => ok && dirs.delete(p));
    } else if (k === 10) {
      const p = fresh();
      const target = rng.int(2) ? pickFile() : `../x/${rng.int(9)}`;
      await both(`symlink ${p} -> ${target}`, (r) => fs.symlink(target, path.join(r, p)));
    } else if (k === 11) {
      const p = anyPath();
      const mode = rng.pick([0o600, 0o644, 0o755, 0o700, 0o640]);
      await both(`chmod ${p} ${mode.toString(8)}`, (r) => fs.chmod(path.join(r, p), mode));
    } else if (k === 12) {
      const p = pickFile();
      const when = new Date(Date.UTC(2000 + rng.int(25), rng.int(12), 1 + rng.int(28), rng.int(24), rng.int(60), rng.int(60)));
      await both(`utimes ${p}`, (r) => fs.utimes(path.join(r, p), when, when), async (ok) => ok && explicit.add(await refIno(p)));
    } else if (k === 13 && LINKS) {
      const src = pickFile();
      const p = fresh();
      await both(`link ${src} ${p}`, (r) => fs.link(path.join(r, src), path.join(r, p)), (ok) => ok && files.add(p));
    } else {
      const p = pickFile();
      const off = rng.int(300000);
      const len = rng.int(200000);
      const read = async (r: string) => {
        const h = await fs.open(path.join(r, p), 'r');
        try {
          const b = Buffer.alloc(len);
          const { bytesRead } = await h.read(b, 0, len, off);
          return createHash('sha256').update(b.subarray(0, bytesRead)).digest('hex');
        } finally {
          await h.close();
        }
      };
      let a = '';
      let b = '';
      const oa = await outcome(async () => (a = await read(path.join(app.mount, 'm'))));
      const ob = await outcome(async () => (b = await read(ref)));
      if (oa !== ob || a !== b) {
        mismatches++;
        t.fail(`read ${p}@${off}+${len} differs (${oa}/${ob})`);
      }
    }
    if (i === 350) {
      // Half way: a clean restart must keep everything.
      t.equal(await app.stop(), 0, 'the appliance stops cleanly');
      app = await startAppliance(t, dir);
    }
  }
  t.equal(mismatches, 0, 'every operation had the same outcome on both');
  const explicitNames = await explicitPaths(ref, explicit);
  const a = await describeTree(path.join(app.mount, 'm'), explicitNames);
  const b = await describeTree(ref, explicitNames);
  t.same(a, b, `the trees are identical (${Object.keys(b).length} entries)`);
  t.equal(await app.stop(), 0, 'the appliance stops cleanly');
  app = await startAppliance(t, dir);
  const c = await describeTree(path.join(app.mount, 'm'), explicitNames);
  t.same(c, b, 'and identical after another restart');
});
