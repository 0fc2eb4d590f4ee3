// A backup's scratch image (fleece-scratch.ts): qemu-img makes the first empty qcow2 of a size;
// later ones of that size are its bytes written again, without spawning qemu-img (30-130 ms of
// every backup's preparation). Shown by taking qemu-img off PATH after the first.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { LocalScratch } from '../src/plugins/qemu/fleece-scratch.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

function qemuImgInfo(file: string): Promise<{ format: string; 'virtual-size': number }> {
  return new Promise((resolve, reject) =>
    execFile('qemu-img', ['info', '--output=json', file], (err, out) => (err ? reject(err) : resolve(JSON.parse(out)))),
  );
}

t.test('the second scratch image of a size is written without qemu-img, and is the same image', async (t) => {
  const dir = tmpDir(t);
  const scratch = new LocalScratch(path.join(dir, 'scratch'));
  const size = 96 * MiB + 512;
  const first = await scratch.create('vda', size);

  const savedPath = process.env.PATH;
  t.teardown(() => {
    process.env.PATH = savedPath;
  });
  const empty = path.join(dir, 'no-tools');
  fs.mkdirSync(empty);
  process.env.PATH = empty;
  const second = await scratch.create('vda', size);
  const third = await scratch.create('vdb', size);
  // Another size needs qemu-img: its absence is reported as before.
  await t.rejects(scratch.create('vdc', size + 64 * 1024), { code: 'NOT_SUPPORTED' }, 'a new size still runs qemu-img');
  process.env.PATH = savedPath;

  t.not(second, first, 'a new file');
  t.ok(fs.readFileSync(second).equals(fs.readFileSync(first)), 'the same bytes as qemu-img wrote');
  t.ok(fs.readFileSync(third).equals(fs.readFileSync(first)), 'and again for another device');
  const info = await qemuImgInfo(second);
  t.equal(info.format, 'qcow2');
  t.equal(info['virtual-size'], size, 'qemu-img reads it as an empty qcow2 of the size asked');
  // The first image was made by qemu-img itself at its own name.
  t.equal((await qemuImgInfo(first))['virtual-size'], size);
});

t.test('images of one size asked for at once are all made, one qemu-img run among them', async (t) => {
  const dir = tmpDir(t);
  const scratch = new LocalScratch(path.join(dir, 'scratch'));
  const size = 80 * MiB;
  const files = await Promise.all(['vda', 'vdb', 'vdc'].map((d) => scratch.create(d, size)));
  t.equal(new Set(files).size, 3, 'three files');
  const bytes = files.map((f) => fs.readFileSync(f));
  t.ok(bytes[1].equals(bytes[0]) && bytes[2].equals(bytes[0]), 'all the same empty image');
  for (const f of files) t.equal((await qemuImgInfo(f))['virtual-size'], size);
});
