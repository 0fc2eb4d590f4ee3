// NFS (nfs-ganesha) and SMB (smbd) exports of a real appliance, driven with real clients:
// libnfs's nfs-cp / nfs-cat / nfs-ls (this machine has no kernel NFS client), our libnfs writer
// for NFSv4 (helpers/nfs-put.c: nfs-cp cannot write over NFSv4 with libnfs 4.0), and smbclient.
// The client outside the allow-list is a network namespace joined by a veth pair.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { buildNfsPut, clientNetns, freePorts } from './helpers/exports.js';
import { describeRun, runTool, sha256File } from './helpers/run-tool.js';
import { tmpDir } from './helpers/tmpdir.js';

const TOOL_MS = 120_000;

async function health(app: Appliance): Promise<any> {
  const res = await fetch(`${app.url}/api/v1/health`);
  return res.json();
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** A small VMDK (64 MiB virtual: random extents among zeros) made by qemu-img from a raw file. */
async function makeVmdk(dir: string): Promise<string> {
  const raw = path.join(dir, 'disk.raw');
  const fd = fs.openSync(raw, 'w');
  fs.ftruncateSync(fd, 64 << 20);
  for (let i = 0; i < 24; i++) {
    const buf = Buffer.alloc(256 << 10);
    for (let j = 0; j < buf.length; j += 4) buf.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ j) >>> 0, j);
    fs.writeSync(fd, buf, 0, buf.length, i * (2 << 20) + (i % 3) * 4096);
  }
  fs.closeSync(fd);
  const vmdk = path.join(dir, 'disk.vmdk');
  const r = await runTool('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', raw, vmdk], { timeoutMs: TOOL_MS });
  if (r.code !== 0) throw new Error(describeRun(r));
  return vmdk;
}

t.test('NFSv3 and NFSv4 export: writes read back identical, after drop_caches and after a restart', async (t) => {
  const dir = tmpDir(t, 'vmvault-export-');
  const [nfsPort, mountPort, smbPort] = await freePorts(3);
  const args = ['--fuse', '3', '--nfs-port', String(nfsPort), '--nfs-mount-port', String(mountPort), '--smb-port', String(smbPort), '--export-host', '127.0.0.1'];
  let app = await startAppliance(t, dir, args);
  t.equal((await app.api('POST', '/shares', { name: 'vms' })).status, 201);
  const en = await app.api('POST', '/exports/nfs/vms', { clients: ['127.0.0.0/8'] });
  t.equal(en.status, 201, JSON.stringify(en.body));
  t.equal(en.body.url, `nfs://127.0.0.1:${nfsPort}/vms`);
  t.same(en.body.clients, ['127.0.0.0/8']);
  t.equal(en.body.state, 'active', 'ganesha answers once enable returns');

  const v3 = (file: string) => `nfs://127.0.0.1/vms/${file}?version=3&nfsport=${nfsPort}&mountport=${mountPort}`;
  const v4 = (file: string) => `nfs://127.0.0.1/vms/${file}?version=4&nfsport=${nfsPort}`;
  const vmdk = await makeVmdk(dir);
  const want = await sha256File(vmdk);

  const cp3 = await runTool('nfs-cp', [vmdk, v3('v3.vmdk')], { timeoutMs: TOOL_MS });
  t.equal(cp3.code, 0, describeRun(cp3));
  const nfsPut = await buildNfsPut(dir);
  const put4 = await runTool(nfsPut, [v4('v4.vmdk'), vmdk, '2048'], { timeoutMs: TOOL_MS });
  t.equal(put4.code, 0, describeRun(put4));

  const readAll = async (when: string) => {
    for (const file of ['v3.vmdk', 'v4.vmdk']) {
      t.equal(await sha256File(path.join(app.mount, 'vms', file)), want, `${file} in the mount is the VMDK (${when})`);
      for (const [ver, url] of [['v3', v3(file)], ['v4', v4(file)]] as const) {
        const out = path.join(dir, `back-${ver}-${file}`);
        const r = await runTool('nfs-cp', [url, out], { timeoutMs: TOOL_MS });
        t.equal(r.code, 0, `${file} read over NFS${ver} (${when}): ${describeRun(r)}`);
        t.equal(await sha256File(out), want, `${file} read over NFS${ver} is identical (${when})`);
        fs.rmSync(out, { force: true });
      }
    }
  };
  await readAll('just written');
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
  await readAll('after drop_caches');
  const qi = await runTool('qemu-img', ['info', '--output=json', path.join(app.mount, 'vms', 'v3.vmdk')], { timeoutMs: TOOL_MS });
  t.equal(JSON.parse(qi.stdout).format, 'vmdk', 'qemu-img sees a VMDK');

  const ganeshaPid = (await health(app)).exports[0].pid;
  t.ok(ganeshaPid > 1, 'health names the ganesha pid');
  t.equal(await app.stop(), 0, 'the appliance stops cleanly with ganesha running');
  t.notOk(fs.existsSync(`/proc/${ganeshaPid}`), 'ganesha is gone with it');
  app = await startAppliance(t, dir, args);
  const list = await app.api('GET', '/exports');
  t.equal(list.body.exports.length, 1, 'the export persists (exports.json)');
  await waitFor('ganesha after the restart', async () => ((await health(app)).exports?.[0]?.listening ? true : undefined));
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
  await readAll('after an appliance restart');
  const ls = await runTool('nfs-ls', [`nfs://127.0.0.1/vms?version=3&nfsport=${nfsPort}&mountport=${mountPort}`], { timeoutMs: TOOL_MS });
  t.match(ls.stdout, /v4\.vmdk/, 'nfs-ls lists the files');
});

t.test('SMB export: a file written with smbclient reads back identical', async (t) => {
  const dir = tmpDir(t, 'vmvault-export-');
  const [nfsPort, mountPort, smbPort] = await freePorts(3);
  const app = await startAppliance(t, dir, ['--nfs-port', String(nfsPort), '--nfs-mount-port', String(mountPort), '--smb-port', String(smbPort), '--export-host', '127.0.0.1']);
  t.equal((await app.api('POST', '/shares', { name: 'hv' })).status, 201);
  const pw = await app.api('PUT', '/exports/smb/password', { password: 'not-in-any-log-42' });
  t.equal(pw.status, 200, JSON.stringify(pw.body));
  t.same(pw.body, { user: 'root' });
  const en = await app.api('POST', '/exports/smb/hv', { clients: ['127.0.0.1'] });
  t.equal(en.status, 201, JSON.stringify(en.body));
  t.equal(en.body.url, `smb://127.0.0.1:${smbPort}/hv`);
  t.same(en.body.clients, ['127.0.0.1/32']);
  const auth = path.join(dir, 'auth');
  fs.writeFileSync(auth, 'username = root\npassword = not-in-any-log-42\n', { mode: 0o600 });
  const src = path.join(dir, 'image.vhdx');
  const data = Buffer.alloc(5 << 20);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  fs.writeFileSync(src, data);
  const put = await runTool('smbclient', ['-p', String(smbPort), '-A', auth, '//127.0.0.1/hv', '-c', `put ${src} image.vhdx`], { timeoutMs: TOOL_MS });
  t.equal(put.code, 0, describeRun(put));
  t.equal(await sha256File(path.join(app.mount, 'hv', 'image.vhdx')), await sha256File(src), 'the mount holds the bytes written over SMB');
  const back = path.join(dir, 'back.vhdx');
  const get = await runTool('smbclient', ['-p', String(smbPort), '-A', auth, '//127.0.0.1/hv', '-c', `get image.vhdx ${back}`], { timeoutMs: TOOL_MS });
  t.equal(get.code, 0, describeRun(get));
  t.equal(await sha256File(back), await sha256File(src), 'read back over SMB: identical');
  fs.writeFileSync(auth, 'username = root\npassword = wrong-password\n', { mode: 0o600 });
  const bad = await runTool('smbclient', ['-p', String(smbPort), '-A', auth, '//127.0.0.1/hv', '-c', 'ls'], { timeoutMs: TOOL_MS });
  t.not(bad.code, 0, 'a wrong password is refused');
  // The password is in no log, no config and not in exports.json.
  for (const f of ['audit.log', 'exports.json', 'smb/smb.conf', 'smb/smbd.out', 'smb/smbd.log']) {
    const p = path.join(app.data, f);
    if (fs.existsSync(p)) t.notMatch(fs.readFileSync(p, 'utf8'), /not-in-any-log-42/, `${f} does not hold the password`);
  }
  t.notMatch(app.log(), /not-in-any-log-42/, "the appliance's log does not hold the password");
});

t.test('a client outside the allow-list is refused; one inside is served', async (t) => {
  const dir = tmpDir(t, 'vmvault-export-');
  const ns = await clientNetns(t);
  const [nfsPort, mountPort, smbPort] = await freePorts(3);
  const app = await startAppliance(t, dir, ['--nfs-port', String(nfsPort), '--nfs-mount-port', String(mountPort), '--smb-port', String(smbPort), '--export-host', ns.hostAddr]);
  for (const s of ['closed', 'open']) t.equal((await app.api('POST', '/shares', { name: s })).status, 201);
  fs.writeFileSync(path.join(app.mount, 'open', 'hello.txt'), 'hello from the appliance\n');
  t.equal((await app.api('POST', '/exports/nfs/closed', { clients: ['127.0.0.0/8'] })).status, 201);
  t.equal((await app.api('POST', '/exports/nfs/open', { clients: [`${ns.clientAddr}/32`] })).status, 201);
  await app.api('PUT', '/exports/smb/password', { password: 'allow-list-pw' });
  t.equal((await app.api('POST', '/exports/smb/closed', { clients: ['127.0.0.0/8'] })).status, 201);
  const url = (share: string, ver: 3 | 4) => `nfs://${ns.hostAddr}/${share}?version=${ver}&nfsport=${nfsPort}${ver === 3 ? `&mountport=${mountPort}` : ''}`;
  for (const ver of [3, 4] as const) {
    const refused = await runTool(ns.exec[0], [...ns.exec.slice(1), 'nfs-ls', url('closed', ver)], { timeoutMs: TOOL_MS });
    t.not(refused.code, 0, `NFSv${ver} from ${ns.clientAddr} to an export for 127.0.0.0/8 is refused: ${describeRun(refused)}`);
    const served = await runTool(ns.exec[0], [...ns.exec.slice(1), 'nfs-cat', `${url('open', ver).replace('/open?', '/open/hello.txt?')}`], { timeoutMs: TOOL_MS });
    t.equal(served.code, 0, `NFSv${ver} from ${ns.clientAddr} to an export for it is served: ${describeRun(served)}`);
    t.equal(served.stdout, 'hello from the appliance\n');
  }
  const auth = path.join(dir, 'auth');
  fs.writeFileSync(auth, 'username = root\npassword = allow-list-pw\n', { mode: 0o600 });
  const smbRefused = await runTool(ns.exec[0], [...ns.exec.slice(1), 'smbclient', '-p', String(smbPort), '-A', auth, `//${ns.hostAddr}/closed`, '-c', 'ls'], { timeoutMs: TOOL_MS });
  t.not(smbRefused.code, 0, `SMB from ${ns.clientAddr} to a share for 127.0.0.0/8 is refused`);
  const smbLocal = await runTool('smbclient', ['-p', String(smbPort), '-A', auth, '//127.0.0.1/closed', '-c', 'ls'], { timeoutMs: TOOL_MS });
  t.equal(smbLocal.code, 0, `SMB from 127.0.0.1 is served: ${describeRun(smbLocal)}`);
});

t.test('a killed ganesha or smbd is noticed, logged, restarted, and /health says so', async (t) => {
  const dir = tmpDir(t, 'vmvault-export-');
  const [nfsPort, mountPort, smbPort] = await freePorts(3);
  const app = await startAppliance(t, dir, ['--nfs-port', String(nfsPort), '--nfs-mount-port', String(mountPort), '--smb-port', String(smbPort), '--export-host', '127.0.0.1']);
  t.equal((await app.api('POST', '/shares', { name: 'vms' })).status, 201);
  t.equal((await app.api('POST', '/exports/nfs/vms', {})).status, 201, 'no clients: this host only');
  t.equal((await app.api('POST', '/exports/smb/vms', {})).status, 201);
  t.same((await app.api('GET', '/exports')).body.exports.map((e: any) => e.clients), [['127.0.0.1/32'], ['127.0.0.1/32', '::1/128']]);
  t.notMatch(app.log(), /config error/, 'ganesha took its config without errors');
  for (const [i, server] of [[0, 'nfs-ganesha'], [1, 'smbd']] as const) {
    const before = await waitFor(`${server} listening`, async () => {
      const h = await health(app);
      return h.exports[i].listening ? h.exports[i] : undefined;
    });
    t.equal(before.server, server);
    t.equal(before.restarts, 0);
    const comm = fs.readFileSync(`/proc/${before.pid}/comm`, 'utf8').trim();
    t.match(comm, server === 'smbd' ? /^smbd/ : /^ganesha/, `/health's pid ${before.pid} is ${server} itself (${comm})`);
    if (!(Number.isInteger(before.pid) && before.pid > 1)) throw new Error(`no pid for ${server} in /health: ${JSON.stringify(before)}`);
    process.kill(before.pid, 'SIGKILL');
    const down = await waitFor(`/health to see ${server} down`, async () => {
      const res = await fetch(`${app.url}/api/v1/health`);
      const h: any = await res.json();
      return h.exports[i].restarts >= 1 ? { status: res.status, h } : undefined;
    }, 20_000);
    t.match(down.h.exports[i].lastError, /killed by SIGKILL|exited with status 137/, `lastError says how ${server} ended`);
    const after = await waitFor(`${server} back`, async () => {
      const h = await health(app);
      return h.exports[i].listening && h.exports[i].pid !== before.pid ? h : undefined;
    });
    t.equal(after.status, 'ok', 'healthy again');
    t.equal(after.exports[i].restarts, 1, 'one restart counted');
    t.match(app.log(), new RegExp(`${server} (was killed by SIGKILL|exited with status 137); restarting`), 'the appliance logged it');
  }
  const ls = await runTool('nfs-ls', [`nfs://127.0.0.1/vms?version=3&nfsport=${nfsPort}&mountport=${mountPort}`], { timeoutMs: TOOL_MS });
  t.equal(ls.code, 0, `NFS serves again: ${describeRun(ls)}`);
});

t.test('bad input gets clear 4xx errors; a deleted share loses its exports', async (t) => {
  const dir = tmpDir(t, 'vmvault-export-');
  const [nfsPort, mountPort, smbPort] = await freePorts(3);
  const app = await startAppliance(t, dir, ['--nfs-port', String(nfsPort), '--nfs-mount-port', String(mountPort), '--smb-port', String(smbPort), '--export-host', '127.0.0.1']);
  t.equal((await app.api('POST', '/shares', { name: 'vms' })).status, 201);
  const cases: Array<[string, string, unknown, number, RegExp]> = [
    ['POST', '/exports/nfs/vms', { clients: ['10.0.0.0/33'] }, 400, /prefix length must be 0\.\.32/],
    ['POST', '/exports/nfs/vms', { clients: ['10.0.0.1/24'] }, 400, /bits set beyond the \/24 prefix \(did you mean 10\.0\.0\.0\/24\?\)/],
    ['POST', '/exports/smb/vms', { clients: ['example.com'] }, 400, /not an IPv4 or IPv6 address/],
    ['POST', '/exports/nfs/vms', { clients: [] }, 400, /empty/],
    ['POST', '/exports/nfs/nosuch', { clients: ['10.0.0.0/24'] }, 404, /no share named nosuch/],
    ['POST', '/exports/ftp/vms', {}, 400, /protocol/],
    ['POST', '/exports/nfs/vms', { clients: ['2001:db8::/32'] }, 400, /NFS clients must be IPv4 networks/],
    ['POST', '/exports/nfs/vms', { clients: '10.0.0.0/8' }, 400, /clients/],
    ['DELETE', '/exports/smb/vms', undefined, 404, /not exported over SMB/],
  ];
  for (const [method, route, body, status, message] of cases) {
    const r = await app.api(method, route, body);
    t.equal(r.status, status, `${method} ${route} ${JSON.stringify(body)} -> ${status}`);
    t.match(r.body?.error?.message ?? '', message);
  }
  t.equal((await app.api('POST', '/exports/nfs/vms', { clients: ['10.0.0.0/24'] })).status, 201);
  const twice = await app.api('POST', '/exports/nfs/vms', { clients: ['10.0.0.0/24'] });
  t.equal(twice.status, 409, 'enabling twice is a conflict');
  t.match(twice.body.error.message, /already exported over NFS \(to 10\.0\.0\.0\/24\)/);
  t.same(JSON.parse(fs.readFileSync(path.join(app.data, 'exports.json'), 'utf8')).nfs.map((e: any) => e.share), ['vms'], 'nothing half-written');

  t.equal((await app.api('DELETE', '/shares/vms')).status, 204);
  t.same((await app.api('GET', '/exports')).body.exports, [], 'the deleted share is no longer exported');
  await waitFor('ganesha to stop with nothing to export', async () => ((await health(app)).exports[0].running ? undefined : true));
  t.equal((await health(app)).status, 'ok', 'a server with nothing to serve is stopped, not a problem');
});
