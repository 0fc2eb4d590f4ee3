// qemu-img writes VM images into the mount the way a hypervisor or backup job does: a VMDK (data
// streamed at the end, grain tables updated in small writes near the start), raw (sparse) and
// qcow2. Every image must compare equal to its source, check clean, and hold the same bytes as
// the same conversion into a plain directory; also with two conversions and a reader running at
// once, after in-place updates by qemu-io, and after the appliance restarts.

import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { copyRealFiles } from './helpers/real-files.js';
import { checkedTool, describeRun, runTool, sha256File } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

const tool = checkedTool(180_000);

/**
 * The head of a VMDK with its content ID masked. qemu-img writes a random CID into the
 * descriptor of every new VMDK (and a new one at the first write after opening), as %x, so 1 to
 * 8 digits; nothing else differs between two conversions. The descriptor text is rebuilt with
 * the CID masked and padded with zeros to the end of the descriptor's area (qemu's 20 sectors
 * from the text's start), so lengths still match. The area past the text's NUL is masked too:
 * when the rewrite at the first write makes the CID shorter, the text shrinks and the old
 * text's last bytes stay behind its NUL (a run of the suite saw a stray newline there, in one of the two files).
 */
const DESCRIPTOR_BYTES = 20 * 512;

function maskCid(head: Buffer): Buffer {
  const s = head.toString('latin1');
  const at = s.indexOf('# Disk DescriptorFile');
  if (at < 0) return head;
  const nul = s.indexOf('\0', at);
  if (nul < 0) return head;
  const end = Math.max(nul, Math.min(s.length, at + DESCRIPTOR_BYTES));
  const text = s.slice(at, nul).replace(/\bCID=[0-9a-f]{1,8}\b/, 'CID=x');
  return Buffer.from(s.slice(0, at) + text + '\0'.repeat(end - at - text.length) + s.slice(end), 'latin1');
}

/** SHA-256 of a VMDK with its CID masked (see maskCid). */
async function vmdkHash(file: string): Promise<string> {
  const h = createHash('sha256');
  const fd = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(4 * MiB);
    let pos = 0;
    for (;;) {
      const { bytesRead } = await fd.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      let chunk: Buffer = buf.subarray(0, bytesRead);
      if (pos === 0) chunk = maskCid(chunk);
      h.update(chunk);
      pos += bytesRead;
    }
  } finally {
    await fd.close();
  }
  return h.digest('hex');
}

/** Where two files differ (sizes, the first differing 4 KiB blocks), for a failure message. */
async function explainDiff(a: string, b: string): Promise<string> {
  const [fa, fb] = await Promise.all([fs.open(a, 'r'), fs.open(b, 'r')]);
  try {
    const [sa, sb] = [(await fa.stat()).size, (await fb.stat()).size];
    const blocks: number[] = [];
    let count = 0;
    let first = '';
    const ba = Buffer.alloc(4 * MiB);
    const bb = Buffer.alloc(4 * MiB);
    for (let pos = 0; pos < Math.max(sa, sb); pos += ba.length) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length, pos), fb.read(bb, 0, bb.length, pos)]);
      for (let o = 0; o < Math.max(ra.bytesRead, rb.bytesRead); o += 4096) {
        let x: Buffer = ba.subarray(o, Math.min(o + 4096, ra.bytesRead));
        let y: Buffer = bb.subarray(o, Math.min(o + 4096, rb.bytesRead));
        if (pos + o === 0 && a.endsWith('.vmdk')) [x, y] = [maskCid(x), maskCid(y)];
        if (!x.equals(y)) {
          count++;
          if (blocks.length < 8) blocks.push(pos + o);
          if (!first) {
            let i = 0;
            while (i < x.length && x[i] === y[i]) i++;
            const show = (z: Buffer) => JSON.stringify(z.subarray(Math.max(0, i - 16), i + 48).toString('latin1'));
            first = `; first difference at byte ${pos + o + i}: ${show(x)} vs ${show(y)}`;
          }
        }
      }
    }
    return `sizes ${sa}/${sb}; ${count} differing 4 KiB block(s) at ${blocks.join(', ')}${first}`;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

async function contentHash(file: string): Promise<string> {
  return file.endsWith('.vmdk') ? vmdkHash(file) : sha256File(file);
}

async function buildImage(tt: TestT, dir: string, name: string, roots: string[], sizeMiB: number, budget: number): Promise<string> {
  const tree = path.join(dir, `tree-${name}`);
  const copied = await copyRealFiles(tree, roots, budget);
  tt.ok(copied.bytes > budget * 0.8, `${name}: ${copied.files} real files, ${(copied.bytes / MiB).toFixed(0)} MiB, copied from ${roots.join(', ')}`);
  const img = path.join(dir, `${name}.raw`);
  await tool(tt, 'truncate', ['-s', `${sizeMiB}M`, img]);
  await tool(tt, 'mkfs.ext4', ['-q', '-F', '-d', tree, img]);
  await fs.rm(tree, { recursive: true, force: true });
  return img;
}

interface Stored {
  /** The file in the mount. */
  file: string;
  src: string;
  format: 'vmdk' | 'raw' | 'qcow2';
  /** contentHash of the same conversion into a plain directory. */
  hash: string;
  plainDir: string;
}

/** The file in the mount hashes like its plain twin (plain/<same name>); if not, say where they differ. */
async function sameBytes(tt: TestT, s: Stored, label: string): Promise<void> {
  const got = await contentHash(s.file);
  if (got === s.hash) tt.pass(label);
  else tt.fail(`${label}: ${await explainDiff(s.file, path.join(s.plainDir, path.basename(s.file)))}`);
}

async function checkStored(tt: TestT, s: Stored, label: string): Promise<void> {
  const cmp = await tool(tt, 'qemu-img', ['compare', s.src, s.file]);
  tt.match(cmp.stdout, /Images are identical/, `${label}: qemu-img compare ${path.basename(s.file)} with its source`);
  if (s.format !== 'raw') {
    const chk = await tool(tt, 'qemu-img', ['check', s.file]);
    tt.match(chk.stdout, /No errors were found on the image/, `${label}: qemu-img check ${path.basename(s.file)} is clean`);
  }
  await sameBytes(tt, s, `${label}: ${path.basename(s.file)} holds the bytes of the same conversion into a plain directory`);
}

t.test('qemu-img images in the mount', async (t) => {
  const dir = tmpDir(t);
  const plain = path.join(dir, 'plain');
  await fs.mkdir(plain);
  const srcA = await buildImage(t, dir, 'a', ['/usr/lib', '/usr/share'], 256, 112 * MiB);
  const srcB = await buildImage(t, dir, 'b', ['/usr/share', '/usr/bin', '/usr/lib'], 256, 96 * MiB);
  const sizeA = (await fs.stat(srcA)).size;

  let app: Appliance = await startAppliance(t, dir);
  t.equal((await app.api('POST', '/shares', { name: 'vms' })).status, 201, 'share vms created');
  const vms = () => path.join(app.mount, 'vms');
  const stored: Stored[] = [];
  const plainConvert = async (src: string, format: Stored['format'], name: string): Promise<string> => {
    const out = path.join(plain, name);
    await tool(t, 'qemu-img', ['convert', '-O', format, src, out]);
    return contentHash(out);
  };

  for (const format of ['vmdk', 'raw', 'qcow2'] as const) {
    const name = `a.${format}`;
    const r = await tool(t, 'qemu-img', ['convert', '-O', format, srcA, path.join(vms(), name)]);
    t.comment(`qemu-img convert -O ${format} into the mount: ${r.ms} ms`);
    const s: Stored = { file: path.join(vms(), name), src: srcA, format, hash: await plainConvert(srcA, format, name), plainDir: plain };
    stored.push(s);
    await checkStored(t, s, 'written');
    const info = await tool(t, 'qemu-img', ['info', '--output=json', s.file]);
    const j = JSON.parse(info.stdout) as { format: string; 'virtual-size': number };
    t.same({ format: j.format, size: j['virtual-size'] }, { format, size: sizeA }, `${name}: format and virtual size`);
  }
  t.equal(stored.find((s) => s.format === 'raw')!.hash, await sha256File(srcA), 'raw conversion is byte for byte the ext4 image (so a.raw, which matched it, is too)');

  // Two conversions into two files at once while a third file is read.
  const [bv, bq, readA, cmpA] = await Promise.all([
    runTool('qemu-img', ['convert', '-O', 'vmdk', srcB, path.join(vms(), 'b.vmdk')], { timeoutMs: 240_000 }),
    runTool('qemu-img', ['convert', '-O', 'qcow2', srcB, path.join(vms(), 'b.qcow2')], { timeoutMs: 240_000 }),
    sha256File(path.join(vms(), 'a.raw')),
    runTool('qemu-img', ['compare', srcA, path.join(vms(), 'a.vmdk')], { timeoutMs: 240_000 }),
  ]);
  t.equal(bv.code, 0, describeRun(bv));
  t.equal(bq.code, 0, describeRun(bq));
  t.equal(cmpA.code, 0, `while converting: ${describeRun(cmpA)}`);
  t.equal(readA, await sha256File(srcA), 'a.raw read while two conversions ran: the ext4 image');
  t.comment(`concurrent conversions: vmdk ${bv.ms} ms, qcow2 ${bq.ms} ms`);
  stored.push({ file: path.join(vms(), 'b.vmdk'), src: srcB, format: 'vmdk', hash: await plainConvert(srcB, 'vmdk', 'b.vmdk'), plainDir: plain });
  stored.push({ file: path.join(vms(), 'b.qcow2'), src: srcB, format: 'qcow2', hash: await plainConvert(srcB, 'qcow2', 'b.qcow2'), plainDir: plain });
  for (const s of stored.slice(-2)) await checkStored(t, s, 'written concurrently');

  // A guest writing into its disk: in-place updates of an existing qcow2 and VMDK (new clusters,
  // rewritten clusters, table updates), applied alike to the copies in the plain directory.
  const writes = ['write -P 0xa5 0 64k', 'write -P 0x5a 1M 4k', 'write -P 0x11 100M 3M', 'write -P 0x22 200M 512', 'write -P 0x33 255M 1M', 'write -z 64M 8M'];
  for (const name of ['a.qcow2', 'a.vmdk']) {
    const format = name.endsWith('.vmdk') ? 'vmdk' : 'qcow2';
    for (const file of [path.join(vms(), name), path.join(plain, name)]) {
      await tool(t, 'qemu-io', ['-f', format, ...writes.flatMap((w) => ['-c', w]), file]);
    }
    const s = stored.find((x) => x.file === path.join(vms(), name))!;
    const cmp = await runTool('qemu-img', ['compare', path.join(plain, name), s.file]);
    t.equal(cmp.code, 0, `${name} after qemu-io updates equals the plain copy so updated: ${describeRun(cmp)}`);
    const differs = await runTool('qemu-img', ['compare', s.src, s.file]);
    t.equal(differs.code, 1, `${name} after the updates no longer equals the source (exit 1 = images differ)`);
    s.hash = await contentHash(path.join(plain, name));
    const chk = await tool(t, 'qemu-img', ['check', s.file]);
    t.match(chk.stdout, /No errors were found on the image/, `${name}: clean after in-place updates`);
    await sameBytes(t, s, `${name}: same bytes as the plain copy after in-place updates`);
  }
  const compareWith = async (tt: TestT, label: string): Promise<void> => {
    for (const s of stored) {
      const updated = s.file.endsWith('a.qcow2') || s.file.endsWith('a.vmdk');
      if (updated) {
        const cmp = await tool(tt, 'qemu-img', ['compare', path.join(plain, path.basename(s.file)), s.file]);
        tt.match(cmp.stdout, /Images are identical/, `${label}: ${path.basename(s.file)} equals its updated plain copy`);
        const chk = await tool(tt, 'qemu-img', ['check', s.file]);
        tt.match(chk.stdout, /No errors were found on the image/, `${label}: ${path.basename(s.file)} checks clean`);
        await sameBytes(tt, s, `${label}: ${path.basename(s.file)} bytes`);
      } else {
        await checkStored(tt, s, label);
      }
    }
  };

  t.equal(await app.stop(), 0, 'the appliance stops cleanly');
  app = await startAppliance(t, dir);
  await compareWith(t, 'after a restart');
  const listed = (await fs.readdir(vms())).filter((n) => n !== '.snapshots').sort();
  t.same(listed, ['a.qcow2', 'a.raw', 'a.vmdk', 'b.qcow2', 'b.vmdk'], 'the share lists exactly the images written');
  const sizes = await Promise.all(stored.map(async (s) => [(await fs.stat(s.file)).size, (await fs.stat(path.join(plain, path.basename(s.file)))).size]));
  for (const [i, [a, b]] of sizes.entries()) t.equal(a, b, `${path.basename(stored[i].file)}: size ${a} as in the plain directory`);
  t.equal(await app.stop(), 0, 'the appliance stops cleanly again');
});
