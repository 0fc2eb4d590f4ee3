// Exports of shares to hypervisors over NFS (nfs-ganesha) and SMB (Samba), supervised by the
// appliance. The one door for enabling, disabling and listing exports (API, CLI), for the SMB
// password, and for what /health says about the two servers.
//
// Rules:
// - exports.json is the truth; each change is written there first, then the server's config is
//   regenerated from it and the server restarted (ganesha) or told to reload (smbd, SIGHUP). A
//   server with nothing to export is stopped.
// - A share that disappears (deleted, renamed) loses its exports: `shareGone` right after a
//   delete through the API, and a periodic check for everything else (a rename in the mount).
// - NFS needs stable file handles: the libfuse3 binding, the only one since fuse-native went
//   (issue 16), gives them (node ids, lookup of . and .., generations).
// - Changes are serialized: one reconfiguration at a time.

import { vmError } from '../errors.js';
import { parseClients } from './cidr.js';
import { type ExportEntry, type ExportsRecord, type Protocol, PROTOCOLS, readExports, writeExports } from './exports-file.js';
import { configErrors, ganeshaLaunch } from './ganesha.js';
import { setSmbPassword, type SmbOptions, smbLaunch, writeSmbConfig } from './samba.js';
import { Supervisor } from './supervisor.js';
import path from 'node:path';

export interface ExportServiceOptions {
  dataDir: string;
  mount: string;
  /** NFS port (ganesha's NFS_Port); default 2049. */
  nfsPort?: number;
  /** MOUNT protocol port for NFSv3 clients; default 20048. */
  nfsMountPort?: number;
  /** SMB port; default 445. */
  smbPort?: number;
  /** Address the servers listen on; default 0.0.0.0 (all). */
  bind?: string;
  /** Host name or address put in the URLs `export list` shows; default the bind address, or this host's name. */
  host: string;
  /** The shares that exist now. */
  listShares: () => Promise<string[]>;
  log: (line: string) => void;
  /** How often exports of vanished shares are looked for, ms; default 10000. */
  checkSharesMs?: number;
  /** How long enable/disable wait for the server to answer again, ms; default 30000. */
  readyTimeoutMs?: number;
}

export const DEFAULT_NFS_PORT = 2049;
export const DEFAULT_NFS_MOUNT_PORT = 20048;
export const DEFAULT_SMB_PORT = 445;
/** Without --clients an export serves only this host: an explicit list opens it to hypervisors. */
export const DEFAULT_CLIENTS: Record<Protocol, string[]> = { nfs: ['127.0.0.1/32'], smb: ['127.0.0.1/32', '::1/128'] };
const DEFAULT_SMB_USER = 'root';

export interface ExportView {
  protocol: Protocol;
  share: string;
  /** Canonical CIDR networks allowed to use the export. */
  clients: string[];
  /** nfs://HOST:PORT/<share> or smb://HOST:PORT/<share>. */
  url: string;
  /** active: served now; starting: the server is (re)starting; down: the server is not running; unavailable: cannot be served in this configuration. */
  state: 'active' | 'starting' | 'down' | 'unavailable';
  detail?: string;
  /** ISO 8601. */
  enabledAt: string;
}

export interface ExportServerHealth {
  protocol: Protocol;
  server: string;
  /** It has exports to serve. */
  wanted: boolean;
  running: boolean;
  /** Its port accepts connections. */
  listening: boolean;
  port: number;
  pid?: number;
  restarts: number;
  lastError?: string;
}

const NAME_OK = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;

/** Share names go into ganesha's and Samba's configs and into URLs: only plain ones are exported. */
export function checkExportable(share: string): void {
  if (!NAME_OK.test(share)) {
    throw vmError('INVALID_ARGUMENT', `share ${JSON.stringify(share)} cannot be exported: an exported share's name must be 1-80 characters of letters, digits, '.', '_' and '-', starting with a letter or digit`);
  }
}

/** The SMB account: a Unix user name, and a password of 8 to 256 characters on one line. */
export function checkSmbAccount(user: string, password: unknown): void {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) throw vmError('INVALID_ARGUMENT', `SMB user ${JSON.stringify(user)} is not a valid Unix user name`);
  if (typeof password !== 'string' || password.length < 8 || password.length > 256 || /[\n\r\0]/.test(password)) {
    throw vmError('INVALID_ARGUMENT', 'the SMB password must be 8 to 256 characters, on one line');
  }
}

/** Clients for a new export: the default (this host) when none are named; NFS takes IPv4 only. */
export function clientsFor(protocol: Protocol, clients: unknown): string[] {
  const list = clients === undefined ? [...DEFAULT_CLIENTS[protocol]] : parseClients(clients);
  if (protocol === 'nfs' && list.some((c) => c.includes(':'))) {
    throw vmError('INVALID_ARGUMENT', `NFS clients must be IPv4 networks (${list.filter((c) => c.includes(':')).join(', ')} is IPv6): nfs-ganesha 4.3 cannot parse IPv6 networks in its export configuration`);
  }
  return list;
}

export function checkProtocol(p: unknown): asserts p is Protocol {
  if (!PROTOCOLS.includes(p as Protocol)) throw vmError('INVALID_ARGUMENT', `protocol must be nfs or smb, not ${JSON.stringify(p)}`);
}

export class ExportService {
  private rec: ExportsRecord;
  private readonly nfs: Supervisor;
  private readonly smb: Supervisor;
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  readonly nfsPort: number;
  readonly nfsMountPort: number;
  readonly smbPort: number;
  private readonly bind: string;

  private constructor(
    private readonly opts: ExportServiceOptions,
    rec: ExportsRecord,
  ) {
    this.rec = rec;
    this.nfsPort = opts.nfsPort ?? DEFAULT_NFS_PORT;
    this.nfsMountPort = opts.nfsMountPort ?? DEFAULT_NFS_MOUNT_PORT;
    this.smbPort = opts.smbPort ?? DEFAULT_SMB_PORT;
    this.bind = opts.bind ?? '0.0.0.0';
    const nfsDir = path.join(opts.dataDir, 'nfs');
    this.nfs = new Supervisor({
      name: 'nfs-ganesha',
      port: this.nfsPort,
      log: opts.log,
      launch: () => ganeshaLaunch({ dir: nfsDir, mount: opts.mount, port: this.nfsPort, mountPort: this.nfsMountPort, bind: this.bind }, this.rec.nfs),
    });
    this.smb = new Supervisor({
      name: 'smbd',
      port: this.smbPort,
      log: opts.log,
      launch: () => smbLaunch(this.smbOptions(), this.rec.smb),
    });
  }

  static async open(opts: ExportServiceOptions): Promise<ExportService> {
    for (const [k, v] of [['nfsPort', opts.nfsPort], ['nfsMountPort', opts.nfsMountPort], ['smbPort', opts.smbPort]] as const) {
      if (v !== undefined && !(Number.isInteger(v) && v >= 1 && v <= 65535)) throw vmError('INVALID_ARGUMENT', `${k} must be a TCP port, 1..65535`);
    }
    if ((opts.nfsPort ?? DEFAULT_NFS_PORT) === (opts.nfsMountPort ?? DEFAULT_NFS_MOUNT_PORT)) throw vmError('INVALID_ARGUMENT', 'the NFS port and the NFS mount port must differ');
    return new ExportService(opts, await readExports(opts.dataDir));
  }

  /** Starts the servers that have exports, and the periodic check for vanished shares. */
  async start(): Promise<void> {
    await this.serial(async () => {
      await this.dropVanished();
      if (this.rec.nfs.length > 0) await this.nfs.ensureRunning();
      if (this.rec.smb.length > 0) await this.smb.ensureRunning();
    });
    const every = this.opts.checkSharesMs ?? 10_000;
    this.timer = setInterval(() => {
      void this.serial(() => this.dropVanished()).catch((err) => this.opts.log(`exports: checking for vanished shares failed: ${(err as Error).message}`));
    }, every);
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.serial(async () => {
      await Promise.all([this.nfs.stop(), this.smb.stop()]);
    });
  }

  async list(): Promise<ExportView[]> {
    const out: ExportView[] = [];
    for (const protocol of PROTOCOLS) {
      const sup = protocol === 'nfs' ? this.nfs : this.smb;
      const st = await sup.state();
      const listening = st.running && (await sup.listening(500));
      for (const e of this.rec[protocol]) out.push(this.view(protocol, e, st.running, listening, st.lastError));
    }
    return out;
  }

  async get(protocol: Protocol, share: string): Promise<ExportView> {
    const v = (await this.list()).find((x) => x.protocol === protocol && x.share === share);
    if (v === undefined) throw vmError('NOT_FOUND', `share ${share} is not exported over ${protocol.toUpperCase()}`);
    return v;
  }

  enable(protocol: Protocol, share: string, clients?: unknown): Promise<ExportView> {
    checkProtocol(protocol);
    checkExportable(share);
    const list = clientsFor(protocol, clients);
    return this.serial(async () => {
      this.checkOpen();
      if (!(await this.opts.listShares()).includes(share)) throw vmError('NOT_FOUND', `no share named ${share}`);
      const existing = this.rec[protocol].find((e) => e.share === share);
      if (existing) {
        throw vmError('ALREADY_EXISTS', `share ${share} is already exported over ${protocol.toUpperCase()} (to ${existing.clients.join(', ')}); to change its clients, disable it and enable it again`);
      }
      const entry: ExportEntry = { share, clients: list, enabledAt: new Date().toISOString() };
      const next: ExportsRecord = { ...this.rec, [protocol]: [...this.rec[protocol], entry] };
      if (protocol === 'nfs') {
        entry.exportId = this.nextExportId();
        next.nextExportId = entry.exportId + 1;
      }
      await writeExports(this.opts.dataDir, next);
      this.rec = next;
      this.opts.log(`exporting share ${share} over ${protocol.toUpperCase()} to ${list.join(', ')}`);
      await this.apply(protocol);
    }).then(() => this.get(protocol, share));
  }

  disable(protocol: Protocol, share: string): Promise<void> {
    checkProtocol(protocol);
    return this.serial(async () => {
      this.checkOpen();
      if (!this.rec[protocol].some((e) => e.share === share)) throw vmError('NOT_FOUND', `share ${share} is not exported over ${protocol.toUpperCase()}`);
      const next = { ...this.rec, [protocol]: this.rec[protocol].filter((e) => e.share !== share) };
      await writeExports(this.opts.dataDir, next);
      this.rec = next;
      this.opts.log(`no longer exporting share ${share} over ${protocol.toUpperCase()}`);
      await this.apply(protocol);
    });
  }

  /** The SMB account's password (set or changed); the password is never logged or stored in clear. */
  setSmbPassword(user: string | undefined, password: string): Promise<{ user: string }> {
    const name = user ?? this.rec.smbUser ?? DEFAULT_SMB_USER;
    checkSmbAccount(name, password);
    return this.serial(async () => {
      this.checkOpen();
      const next = { ...this.rec, smbUser: name };
      await setSmbPassword({ ...this.smbOptions(), user: name }, this.rec.smb, name, password);
      if (this.rec.smbUser !== name) {
        await writeExports(this.opts.dataDir, next);
        this.rec = next;
        if (this.rec.smb.length > 0) await this.apply('smb');
      }
      this.opts.log(`SMB password of ${name} set`);
      return { user: name };
    });
  }

  /** After a share was deleted: its exports go (called by the composition root). */
  shareGone(share: string): Promise<void> {
    return this.serial(() => this.drop(new Set([share])));
  }

  async health(): Promise<ExportServerHealth[]> {
    const out: ExportServerHealth[] = [];
    for (const protocol of PROTOCOLS) {
      const sup = protocol === 'nfs' ? this.nfs : this.smb;
      const st = await sup.state();
      const h: ExportServerHealth = {
        protocol,
        server: sup.name,
        wanted: this.rec[protocol].length > 0,
        running: st.running,
        listening: st.running && (await sup.listening(500)),
        port: protocol === 'nfs' ? this.nfsPort : this.smbPort,
        restarts: st.restarts,
      };
      if (st.pid !== undefined) h.pid = st.pid;
      if (st.lastError !== undefined) h.lastError = st.lastError;
      out.push(h);
    }
    return out;
  }

  private smbOptions(): SmbOptions {
    return { dir: path.join(this.opts.dataDir, 'smb'), mount: this.opts.mount, port: this.smbPort, bind: this.bind, user: this.rec.smbUser ?? DEFAULT_SMB_USER };
  }

  private view(protocol: Protocol, e: ExportEntry, running: boolean, listening: boolean, lastError: string | undefined): ExportView {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    const port = protocol === 'nfs' ? this.nfsPort : this.smbPort;
    const v: ExportView = { protocol, share: e.share, clients: [...e.clients], url: `${protocol}://${host}:${port}/${e.share}`, state: 'active', enabledAt: e.enabledAt };
    if (!running) {
      v.state = 'down';
      v.detail = lastError ?? 'the server is not running';
    } else if (!listening) {
      v.state = 'starting';
    } else if (protocol === 'nfs') {
      v.detail = `NFSv3 clients: MOUNT port ${this.nfsMountPort} (no portmapper), e.g. nfs://${host}/${e.share}?version=3&nfsport=${port}&mountport=${this.nfsMountPort}`;
    } else if (this.rec.smbUser === undefined) {
      v.detail = 'no SMB password set yet: vmvault export smb password';
    } else {
      v.detail = `SMB user ${this.rec.smbUser}`;
    }
    return v;
  }

  private async apply(protocol: Protocol): Promise<void> {
    if (protocol === 'nfs') {
      if (this.rec.nfs.length === 0) return this.nfs.stop();
      // ganesha cannot drop an export cleanly at run time (SIGHUP adds and updates); a restart
      // is a few seconds, and Graceless keeps clients from waiting out a grace period.
      await this.nfs.restart();
      if (!(await this.nfs.waitListening(this.opts.readyTimeoutMs ?? 30_000))) this.opts.log('nfs-ganesha does not answer yet after its restart; see its log');
      for (const line of await configErrors(path.join(this.opts.dataDir, 'nfs'))) this.opts.log(`nfs-ganesha config error: ${line}`);
      return;
    }
    if (this.rec.smb.length === 0) return this.smb.stop();
    const st = await this.smb.state();
    if (st.running) {
      await writeSmbConfig(this.smbOptions(), this.rec.smb);
      await this.smb.signal('SIGHUP');
    } else {
      await this.smb.ensureRunning();
    }
    if (!(await this.smb.waitListening(this.opts.readyTimeoutMs ?? 30_000))) this.opts.log('smbd does not answer yet; see its log');
  }

  private async dropVanished(): Promise<void> {
    if (this.closed || (this.rec.nfs.length === 0 && this.rec.smb.length === 0)) return;
    const shares = new Set(await this.opts.listShares());
    const gone = new Set([...this.rec.nfs, ...this.rec.smb].map((e) => e.share).filter((s) => !shares.has(s)));
    if (gone.size > 0) await this.drop(gone);
  }

  private async drop(gone: Set<string>): Promise<void> {
    const changed: Protocol[] = PROTOCOLS.filter((p) => this.rec[p].some((e) => gone.has(e.share)));
    if (changed.length === 0) return;
    const next: ExportsRecord = { ...this.rec, nfs: this.rec.nfs.filter((e) => !gone.has(e.share)), smb: this.rec.smb.filter((e) => !gone.has(e.share)) };
    await writeExports(this.opts.dataDir, next);
    this.rec = next;
    for (const s of gone) this.opts.log(`share ${s} no longer exists: its exports are dropped`);
    for (const p of changed) await this.apply(p);
  }

  private nextExportId(): number {
    const max = Math.max(0, ...this.rec.nfs.map((e) => e.exportId ?? 0));
    const id = Math.max(this.rec.nextExportId ?? 1, max + 1);
    if (id > 65535) throw vmError('INVALID_ARGUMENT', 'NFS export ids are used up (65535)');
    return id;
  }

  private checkOpen(): void {
    if (this.closed) throw vmError('CLOSED', 'the appliance is shutting down');
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn);
    this.chain = next.catch(() => {});
    return next;
  }
}
