// A TEST DOUBLE of the export service, for HTTP-layer tests only (routes, bad input, OpenAPI):
// it keeps exports in a map and starts no server. Its checks are the real ones (src/export/'s
// protocol, name, client-list and SMB-account rules). The real servers are tested in
// test/export-servers.test.ts.

import { vmError } from '../../src/errors.js';
import { checkExportable, checkProtocol, checkSmbAccount, clientsFor } from '../../src/export/export-service.js';
import type { ExportControl, ExportProtocol, ExportView } from '../../src/control/services.js';

export class MemoryExports implements ExportControl {
  readonly exports = new Map<string, ExportView>();

  constructor(private readonly shareExists: (name: string) => boolean) {}

  async list(): Promise<ExportView[]> {
    return [...this.exports.values()];
  }

  async enable(protocol: ExportProtocol, share: string, clients?: string[]): Promise<ExportView> {
    checkProtocol(protocol);
    checkExportable(share);
    const list = clientsFor(protocol, clients);
    if (!this.shareExists(share)) throw vmError('NOT_FOUND', `no share named ${share}`);
    const key = `${protocol}/${share}`;
    if (this.exports.has(key)) throw vmError('ALREADY_EXISTS', `share ${share} is already exported over ${protocol.toUpperCase()}`);
    const v: ExportView = { protocol, share, clients: list, url: `${protocol}://appliance.test:${protocol === 'nfs' ? 2049 : 445}/${share}`, state: 'active', enabledAt: new Date().toISOString() };
    this.exports.set(key, v);
    return v;
  }

  async disable(protocol: ExportProtocol, share: string): Promise<void> {
    checkProtocol(protocol);
    if (!this.exports.delete(`${protocol}/${share}`)) throw vmError('NOT_FOUND', `share ${share} is not exported over ${protocol.toUpperCase()}`);
  }

  async setSmbPassword(user: string | undefined, password: string): Promise<{ user: string }> {
    checkSmbAccount(user ?? 'root', password);
    return { user: user ?? 'root' };
  }
}
