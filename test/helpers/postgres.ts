// A real PostgreSQL 15 on the host for plug-in tests: initdb into a temporary directory as
// the postgres user, started on a free TCP port on 127.0.0.1 and a socket in that directory,
// stopped (and removed) in teardown even when the test fails.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

const BIN = '/usr/lib/postgresql/15/bin';

export interface TestPostgres {
  port: number;
  socketDir: string;
  /** Superuser `postgres` with this password over TCP; trust over the socket. */
  password: string;
  url(user?: string, password?: string, db?: string): string;
  /** Runs SQL as the superuser through psql over the socket; returns its unaligned output. */
  sql(query: string): string;
}

export function havePostgres(): boolean {
  return fs.existsSync(path.join(BIN, 'initdb')) && fs.existsSync(path.join(BIN, 'pg_ctl'));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Teardown { teardown(fn: () => unknown): void }

export async function startPostgres(t: Teardown): Promise<TestPostgres> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-pg-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const data = path.join(dir, 'data');
  const password = 'pw-' + Math.random().toString(36).slice(2);
  fs.writeFileSync(path.join(dir, 'pwfile'), password + '\n');
  execFileSync('chown', ['-R', 'postgres:postgres', dir]);
  const asPg = (cmd: string, args: string[]): string =>
    execFileSync('runuser', ['-u', 'postgres', '--', path.join(BIN, cmd), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  asPg('initdb', ['-D', data, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', `--pwfile=${path.join(dir, 'pwfile')}`, '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  asPg('pg_ctl', ['start', '-D', data, '-w', '-t', '60', '-l', path.join(dir, 'log'),
    '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`]);
  t.teardown(() => {
    try { asPg('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w']); } catch { /* already down */ }
  });
  return {
    port,
    socketDir: dir,
    password,
    url: (user = 'postgres', pw = password, db = 'postgres') => `postgres://${user}:${encodeURIComponent(pw)}@127.0.0.1:${port}/${db}`,
    sql: (query) => execFileSync('runuser', ['-u', 'postgres', '--', path.join(BIN, 'psql'), '-h', dir, '-p', String(port), '-d', 'postgres', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query], { encoding: 'utf8' }).trim(),
  };
}

/** An LSN 'X/Y' as a number for comparison. */
export function lsn(s: string): bigint {
  const [hi, lo] = s.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}
