// npm run bench:export [-- IMAGE] [-- --quick] [-- --dir=DIR] [-- --runs=N]
//   (node dist/tools/bench-export.js)
// Prints one JSON line: {"figure":"nfs.write.vs_mount","value":R,"unit":"ratio",...}: the
// throughput of nfs-cp of IMAGE (default /work/vmimages/vm1-day1.raw, 2 GiB) over NFSv3 into an
// exported share, against cp of the same file into the mount, both measured in this run, each
// into a fresh appliance (so neither finds the other's segments already stored), each followed by
// an fsync of the file through the mount (durable, like a hypervisor's close). cp writes every
// byte (--sparse=never), zeros included, as nfs-cp does; `--sparse-cp` adds the figure
// nfs.write.vs_mount_sparse against a plain cp, which skips the source's holes. The appliance
// runs the libfuse3 binding (NFS needs it). Best of --runs (default 1). --quick: the first
// 256 MiB. Run as root (FUSE, ganesha's namespaces).

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const args = process.argv.slice(2);
const opt = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes('--quick');
const runs = Number(opt('runs') ?? 1);
let image = args.find((a) => !a.startsWith('--')) ?? '/work/vmimages/vm1-day1.raw';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = path.join(root, 'bin', 'vmvault.js');
const note = (line: string) => void process.stderr.write(`bench: ${line}\n`);

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise<net.Server>((resolve) => {
    const s = net.createServer();
    s.listen(0, '0.0.0.0', () => resolve(s));
  })));
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

interface App {
  mount: string;
  url: string;
  token: string;
  stop(): Promise<void>;
}

async function startApp(dir: string, ports: number[]): Promise<App> {
  const data = path.join(dir, 'data');
  const mount = path.join(dir, 'mnt');
  const child = spawn(process.execPath, [bin, 'appliance', '--data', data, '--mount', mount, '--listen', '127.0.0.1:0', '--fuse', '3',
    '--nfs-port', String(ports[0]), '--nfs-mount-port', String(ports[1]), '--smb-port', String(ports[2]), '--export-host', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the appliance did not start:\n${log}`)), 60_000);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      const m = /control plane at (http:\/\/\S+)\/api\/v1/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then(() => reject(new Error(`the appliance exited:\n${log}`)));
  });
  return {
    mount,
    url,
    token: fs.readFileSync(path.join(data, 'api-token'), 'utf8').trim(),
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function api(app: App, method: string, route: string, body?: unknown): Promise<any> {
  const res = await fetch(`${app.url}/api/v1${route}`, { method, headers: { authorization: `Bearer ${app.token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${route}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const work = fs.mkdtempSync(path.join(opt('dir') ?? os.tmpdir(), 'vmvault-bench-export-'));
try {
  if (quick) {
    const part = path.join(work, 'image-256m.raw');
    await run('dd', [`if=${image}`, `of=${part}`, 'bs=1M', 'count=256', 'status=none']);
    image = part;
  }
  const size = fs.statSync(image).size;
  note(`image ${image}, ${(size / 2 ** 20).toFixed(0)} MiB; ${runs} run(s)`);
  // Read once so both copies start from the page cache.
  await run('sh', ['-c', `cat "${image}" > /dev/null`]);
  let bestMount = 0;
  let bestNfs = 0;
  let bestSparse = 0;
  const kinds = args.includes('--sparse-cp') ? (['mount', 'nfs', 'sparse'] as const) : (['mount', 'nfs'] as const);
  for (let r = 0; r < runs; r++) {
    for (const kind of kinds) {
      const dir = fs.mkdtempSync(path.join(work, `${kind}-`));
      const ports = await freePorts(3);
      const app = await startApp(dir, ports);
      try {
        await api(app, 'POST', '/shares', { name: 'vms' });
        const target = path.join(app.mount, 'vms', 'image.raw');
        let copySecs: number;
        if (kind === 'sparse') {
          copySecs = await timed(() => run('cp', [image, target]));
        } else if (kind === 'mount') {
          // --sparse=never: cp would otherwise skip the image's holes (SEEK_HOLE) and write a
          // quarter of the bytes nfs-cp sends; the figure compares the same bytes moved.
          copySecs = await timed(() => run('cp', ['--sparse=never', image, target]));
        } else {
          await api(app, 'POST', '/exports/nfs/vms', { clients: ['127.0.0.0/8'] });
          const url = `nfs://127.0.0.1/vms/image.raw?version=3&nfsport=${ports[0]}&mountport=${ports[1]}`;
          copySecs = await timed(() => run('nfs-cp', [image, url], { maxBuffer: 1 << 20 }));
        }
        const syncSecs = await timed(() => run('sync', [target]));
        const secs = copySecs + syncSecs;
        note(`run ${r + 1}: ${kind}: copy ${copySecs.toFixed(2)} s, then fsync ${syncSecs.toFixed(2)} s; load average ${os.loadavg()[0].toFixed(1)}`);
        if (fs.statSync(target).size !== size) throw new Error(`${kind}: the copy has the wrong size`);
        const mbs = size / 1e6 / secs;
        note(`run ${r + 1}: ${kind === 'mount' ? 'cp --sparse=never into the mount' : kind === 'sparse' ? 'cp (skipping holes) into the mount' : 'nfs-cp over NFSv3'}: ${secs.toFixed(2)} s, ${mbs.toFixed(0)} MB/s of image`);
        if (kind === 'mount') bestMount = Math.max(bestMount, mbs);
        else if (kind === 'sparse') bestSparse = Math.max(bestSparse, mbs);
        else bestNfs = Math.max(bestNfs, mbs);
      } finally {
        await app.stop();
      }
    }
  }
  process.stdout.write(
    JSON.stringify({ figure: 'nfs.write.vs_mount', value: Math.round((bestNfs / bestMount) * 100) / 100, unit: 'ratio', nfs_mb_s: Math.round(bestNfs), mount_mb_s: Math.round(bestMount), bytes: size, goal: 0.7 }) + '\n',
  );
  if (bestSparse > 0) {
    process.stdout.write(JSON.stringify({ figure: 'nfs.write.vs_mount_sparse', value: Math.round((bestNfs / bestSparse) * 100) / 100, unit: 'ratio', nfs_mb_s: Math.round(bestNfs), mount_mb_s: Math.round(bestSparse), bytes: size }) + '\n');
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
