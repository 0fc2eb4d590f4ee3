// Helpers for the export tests: free TCP ports for the servers, the libnfs NFSv4 writer
// (nfs-put.c, built here with gcc), and a second client address in a network namespace joined
// to the host by a veth pair (libnfs 4.0 and smbclient cannot pick their source address, so a
// client outside an allow-list needs an address of its own).

import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** `n` distinct TCP ports nothing listens on now (held open together while chosen). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '0.0.0.0', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** Builds test/helpers/nfs-put.c into `dir`; returns the binary's path. */
export async function buildNfsPut(dir: string): Promise<string> {
  const out = path.join(dir, 'nfs-put');
  await run('gcc', ['-O2', '-Wall', '-o', out, path.join(repo, 'test', 'helpers', 'nfs-put.c'), '-lnfs']);
  return out;
}

export interface ClientNetns {
  name: string;
  /** The host's address on the link (the servers are reached here). */
  hostAddr: string;
  /** The namespace's address: the "other" client. */
  clientAddr: string;
  /** argv prefix that runs a command inside the namespace. */
  exec: string[];
}

/** A network namespace with a veth pair to the host, removed at teardown. */
export async function clientNetns(t: Teardown): Promise<ClientNetns> {
  const id = (process.pid % 60000).toString(36);
  const name = `vvexp-${id}`;
  const hostIf = `vvx${id}h`;
  const nsIf = `vvx${id}n`;
  // A /30 from 10.250.0.0/16 chosen by pid, so parallel runs of this test do not collide.
  const n = (process.pid % 16000) * 4;
  const a = `10.250.${(n >> 8) & 0xff}.${(n & 0xff) + 1}`;
  const b = `10.250.${(n >> 8) & 0xff}.${(n & 0xff) + 2}`;
  const cleanup = async () => {
    await run('ip', ['netns', 'del', name]).catch(() => {});
    await run('ip', ['link', 'del', hostIf]).catch(() => {});
  };
  await cleanup();
  t.teardown(cleanup);
  await run('ip', ['netns', 'add', name]);
  await run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
  await run('ip', ['link', 'set', nsIf, 'netns', name]);
  await run('ip', ['addr', 'add', `${a}/30`, 'dev', hostIf]);
  await run('ip', ['link', 'set', hostIf, 'up']);
  await run('ip', ['netns', 'exec', name, 'ip', 'addr', 'add', `${b}/30`, 'dev', nsIf]);
  await run('ip', ['netns', 'exec', name, 'ip', 'link', 'set', nsIf, 'up']);
  await run('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
  return { name, hostAddr: a, clientAddr: b, exec: ['ip', 'netns', 'exec', name] };
}
