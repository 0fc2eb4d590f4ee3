// The composition root: `vmvault appliance` opens the store, mounts it, and serves the
// control plane. The only module (with appliance-services.ts) that imports every layer.
//
// Shutdown (Ctrl-C, SIGTERM): stop taking API requests, unmount (the kernel releases open
// files, which commits their data), commit whatever is still buffered, close the store. A
// second signal exits at once; the store then recovers at the next start.

import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ApplianceServices, VERSION } from './appliance-services.js';
import { DEFAULT_DATA_DIR, DEFAULT_LISTEN } from './control/defaults.js';
import { listen } from './control/listen.js';
import { buildServer } from './control/server.js';
import { ensureToken } from './control/token.js';
import { fromSystemError, isVmvaultError, vmError } from './errors.js';
import { FuseMount } from './fuse/binding.js';
import { vmvaultHandlers } from './fuse/filesystem.js';
import { Namespace } from './namespace/namespace.js';
import { SegmentStore } from './store/store.js';

export interface ApplianceConfig {
  data: string;
  mount: string;
  listen: string;
  /** Memory all open files may buffer before writers wait, MiB. */
  dirtyLimitMiB?: number;
  /** Free space kept on the data disk for deletes and GC, MiB (default: 1% of the disk, 64 MiB..2 GiB). */
  reserveMiB?: number;
}

export const DEFAULTS: ApplianceConfig = { data: DEFAULT_DATA_DIR, mount: './vmvault-mnt', listen: DEFAULT_LISTEN };

const USAGE = `usage: vmvault appliance [--data DIR] [--mount DIR] [--listen HOST:PORT] [--config FILE]

Opens the store in DIR (default ${DEFAULTS.data}, created if missing), mounts it at the mount
point (default ${DEFAULTS.mount}) and serves the control plane (default ${DEFAULTS.listen}).
A config file is JSON with the same keys ({"data": ..., "mount": ..., "listen": ...});
options on the command line win over it. Ctrl-C or SIGTERM unmounts cleanly.`;

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} vmvault: ${line}\n`);
}

export async function loadConfig(argv: string[]): Promise<ApplianceConfig | 'help'> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      mount: { type: 'string' },
      listen: { type: 'string' },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  let fromFile: Partial<ApplianceConfig> = {};
  if (values.config) {
    let text: string;
    try {
      text = await fs.readFile(values.config, 'utf8');
    } catch (err) {
      throw fromSystemError(err, `reading config file ${values.config}`);
    }
    try {
      fromFile = JSON.parse(text) as Partial<ApplianceConfig>;
    } catch (err) {
      throw vmError('INVALID_ARGUMENT', `config file ${values.config} is not valid JSON: ${(err as Error).message}`);
    }
    for (const k of Object.keys(fromFile)) {
      if (!['data', 'mount', 'listen', 'dirtyLimitMiB', 'reserveMiB'].includes(k)) throw vmError('INVALID_ARGUMENT', `config file ${values.config}: unknown key "${k}"`);
    }
  }
  const cfg: ApplianceConfig = {
    data: values.data ?? fromFile.data ?? DEFAULTS.data,
    mount: values.mount ?? fromFile.mount ?? DEFAULTS.mount,
    listen: values.listen ?? fromFile.listen ?? DEFAULTS.listen,
    dirtyLimitMiB: fromFile.dirtyLimitMiB,
    reserveMiB: fromFile.reserveMiB,
  };
  for (const k of ['dirtyLimitMiB', 'reserveMiB'] as const) {
    const v = cfg[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw vmError('INVALID_ARGUMENT', `${k} must be a number of MiB`);
  }
  for (const k of ['data', 'mount', 'listen'] as const) {
    if (typeof cfg[k] !== 'string' || cfg[k].length === 0) throw vmError('INVALID_ARGUMENT', `${k} must be a non-empty string`);
  }
  return cfg;
}

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  if (!m) throw vmError('INVALID_ARGUMENT', `--listen ${s}: expected HOST:PORT, e.g. 127.0.0.1:7070`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

export interface RunningAppliance {
  url: string;
  stop(): Promise<void>;
}

export async function startAppliance(cfg: ApplianceConfig): Promise<RunningAppliance> {
  const data = path.resolve(cfg.data);
  const mount = path.resolve(cfg.mount);
  const { host, port } = parseListen(cfg.listen);
  if (mount === data || mount.startsWith(data + path.sep)) {
    throw vmError('INVALID_ARGUMENT', `the mount point ${mount} must not be inside the data directory ${data}`);
  }
  log(`vmvault ${VERSION}: opening the store in ${data}`);
  const store = await SegmentStore.open(data, { reserveBytes: cfg.reserveMiB === undefined ? undefined : cfg.reserveMiB * 1024 * 1024 });
  if (store.recovery && (store.recovery.containersScanned > 0 || store.recovery.problems.length > 0)) {
    const r = store.recovery;
    log(`recovered from an unclean shutdown: ${r.containersScanned} container(s) checked, ${r.containersRepaired} repaired, ${r.recordsRecovered} record(s) re-indexed, ${r.bytesCut} torn byte(s) cut`);
    for (const p of r.problems) log(`recovery: ${p}`);
  }
  let ns: Namespace | undefined;
  let fuse: FuseMount | undefined;
  let server: Awaited<ReturnType<typeof buildServer>> | undefined;
  let svc: ApplianceServices | undefined;
  try {
    ns = await Namespace.open(store, { dirtyLimitBytes: cfg.dirtyLimitMiB ? cfg.dirtyLimitMiB * 1024 * 1024 : undefined, log });
    const token = await ensureToken(data);
    if (token.created) log(`created the API token in ${token.file} (mode 0600)`);
    fuse = new FuseMount(mount, vmvaultHandlers(ns), { mkdir: true, log });
    await fuse.mount();
    log(`mounted at ${mount} (libfuse: ${FuseMount.libfuse()})`);
    if (fuse.utimeOmitProblem) log(`note: ${fuse.utimeOmitProblem}`);
    svc = new ApplianceServices(ns);
    server = await buildServer(svc, { token: token.token });
    const url = await listen(server, { host, port });
    log(`control plane at ${url}/api/v1 (token in ${token.file})`);
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        svc!.closing = true;
        log('shutting down: committing open files and unmounting');
        await server!.close().catch((err) => log(`closing the control plane: ${(err as Error).message}`));
        await fuse!.unmount().catch((err) => log(`unmounting ${mount}: ${(err as Error).message}`));
        await ns!.close();
        await store.close();
        log('stopped cleanly');
      })());
    return { url, stop };
  } catch (err) {
    await server?.close().catch(() => {});
    await fuse?.unmount().catch(() => {});
    await ns?.close().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
}

/** `vmvault appliance [options]`: runs until a signal. */
export async function main(argv: string[]): Promise<number> {
  let cfg: ApplianceConfig | 'help';
  try {
    cfg = await loadConfig(argv);
  } catch (err) {
    process.stderr.write(`vmvault appliance: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (cfg === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let app: RunningAppliance;
  try {
    app = await startAppliance(cfg);
  } catch (err) {
    const code = isVmvaultError(err) ? err.code : 'IO';
    log(`cannot start (${code}): ${(err as Error).message}`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (++signals > 1) {
        log(`${sig} again: exiting without a clean shutdown (the store recovers at the next start)`);
        process.exit(130);
      }
      app.stop().then(resolve, (err) => {
        log(`shutdown failed: ${(err as Error).message}`);
        resolve();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return 0;
}
