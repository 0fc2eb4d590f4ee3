// What the QEMU plug-in needs of a QMP connection. `QmpClient` (qmp.ts) is one, over a local
// UNIX or TCP socket; a channel relayed through the agent on the VM's host (issue 13: the QMP
// sockets of a Proxmox-style host are UNIX sockets only that host can open) is another. Code that
// speaks QMP (describeVm, Fleece, the backup service) takes this interface, never the class, so
// it runs unchanged whichever way the monitor is reached.

export interface QmpChannel {
  /** Where the monitor is, for messages: `unix:/path`, `tcp:host:port`, or `agent:HOST unix:/path`. */
  readonly address: string;
  /** QEMU's version from the greeting, e.g. { major: 7, minor: 2, micro: 22 }. */
  readonly version: { major: number; minor: number; micro: number } | null;
  /** Runs one QMP command; rejects with a typed error on QEMU's error reply or timeout. */
  execute<T = unknown>(command: string, args?: object, opts?: { timeoutMs?: number }): Promise<T>;
  /**
   * Resolves with the data of the first event named `name` (for which `match` holds), looking
   * first at the events buffered since the channel was opened, then waiting up to timeoutMs.
   */
  waitEvent(name: string, match?: (data: any) => boolean, timeoutMs?: number): Promise<any>;
  /** Drops the buffered events (all, or those named `name`). */
  clearEvents(name?: string): void;
  close(): Promise<void>;
}
