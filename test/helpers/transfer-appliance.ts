// A real store, namespace and control plane (with the transfer receiver and agent tokens) in a
// temporary directory, listening on loopback: what an agent talks to. Closed when the test ends.

import { ApplianceServices } from '../../src/appliance-services.js';
import path from 'node:path';
import { AgentTokens } from '../../src/control/agent-tokens.js';
import { AuditLog } from '../../src/control/audit-log.js';
import { listen } from '../../src/control/listen.js';
import { buildServer } from '../../src/control/server.js';
import type { Namespace } from '../../src/namespace/namespace.js';
import type { SegmentStore } from '../../src/store/store.js';
import { TransferReceiver } from '../../src/transfer/receiver.js';
import { openNs } from './ns.js';
import { tmpDir } from './tmpdir.js';

export const ADMIN = 'admin-token-for-transfer-tests-0123456789';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TransferAppliance {
  url: string;
  store: SegmentStore;
  ns: Namespace;
  receiver: TransferReceiver;
  tokens: AgentTokens;
  logs: string[];
  dir: string;
  /** The audit log, on as in the appliance (its hook sees every frame's body). */
  audit: AuditLog;
}

export async function transferAppliance(t: Teardown, opts: { authFailures?: { limit: number; windowMs: number }; newestProtocol?: number } = {}): Promise<TransferAppliance> {
  const dir = tmpDir(t, 'vmvault-transfer-');
  const { store, ns } = await openNs(t, dir);
  const logs: string[] = [];
  const receiver = new TransferReceiver(ns, { log: (l) => logs.push(l), ...(opts.newestProtocol ? { newestProtocol: opts.newestProtocol } : {}) });
  const svc = new ApplianceServices(ns);
  svc.transfer = receiver;
  const tokens = await AgentTokens.load(dir);
  const audit = new AuditLog(path.join(dir, 'audit.log'));
  const app = await buildServer(svc, { token: ADMIN, agentTokens: tokens, authFailures: opts.authFailures, audit });
  const url = await listen(app, { host: '127.0.0.1', port: 0 });
  // Registered after openNs's: runs first (tap runs teardowns last-in first-out).
  t.teardown(async () => {
    await app.close();
    await receiver.close();
    await audit.close();
  });
  return { url, store, ns, receiver, tokens, logs, dir, audit };
}

/** A ReadSource over a buffer, optionally with a zero map. */
export function bufferSource(buf: Buffer, opts: { map?: boolean } = {}) {
  return {
    size: buf.length,
    async read(offset: number, length: number): Promise<Buffer> {
      return Buffer.from(buf.subarray(offset, offset + length));
    },
    ...(opts.map
      ? {
          async dataRanges(offset: number, length: number) {
            const out: Array<{ offset: number; length: number; zero: boolean }> = [];
            const B = 64 * 1024;
            for (let o = offset; o < offset + length; o += B) {
              const n = Math.min(B, offset + length - o);
              const zero = buf.subarray(o, o + n).every((b) => b === 0);
              const last = out[out.length - 1];
              if (last && last.zero === zero) last.length += n;
              else out.push({ offset: o, length: n, zero });
            }
            return out;
          },
        }
      : {}),
  };
}
