// The qemu plug-in: what a workflow asks of a QEMU VM.
//   quiesce-vm    guest-fsfreeze-freeze through the guest agent (needs target.qga)
//   unquiesce-vm  guest-fsfreeze-thaw; idempotent (a thawed guest answers 0 and that is fine),
//                 and works in a fresh process (journal recovery after a crash)
//   snapshot      Fleece.pointInTime(): one transaction for every disk (bitmap + fleecing job)
//
// The fleecing handle is made by the backup service before the workflow runs and handed over in
// the run's state under FLEECE_KEY; this plug-in knows nothing of the store or of copying.

import { vmError } from '../../errors.js';
import type { ActionContext, ActionName, Plugin, WorkflowTarget } from '../plugin-api.js';
import type { Fleece } from './fleece.js';
import { GuestAgent } from './qga.js';

/** Where the backup service puts the run's Fleece in ActionContext.state. */
export const FLEECE_KEY = 'qemu.fleece';
/** Where this plug-in keeps the guest-agent connection between quiesce-vm and unquiesce-vm. */
const AGENT_KEY = 'qemu.guest-agent';
/**
 * A run's way to reach the guest agent, when not its socket directly: (address) => the agent, or
 * undefined to connect directly. A VM on a host (issue 13) has a UNIX socket's relayed through
 * that host's agent (backup/host-qga.ts).
 */
export const GUEST_AGENT_OPENER_KEY = 'qemu.guest-agent-opener';

/** What quiesce needs of a guest agent (GuestAgent here, HostGuestAgent through a host's agent). */
export interface GuestAgentLike {
  freeze(): Promise<number>;
  thaw(): Promise<number>;
  close(): Promise<void>;
}

export interface QemuPluginOptions {
  /** Guest-agent connect and command timeout. Default 10 s. */
  agentTimeoutMs?: number;
}

export class QemuPlugin implements Plugin {
  readonly name = 'qemu';
  private readonly agentTimeoutMs: number;

  constructor(opts: QemuPluginOptions = {}) {
    this.agentTimeoutMs = opts.agentTimeoutMs ?? 10_000;
  }

  performs(action: ActionName, target: WorkflowTarget): boolean {
    if (action === 'snapshot') return typeof target.qmp === 'string';
    if (action === 'quiesce-vm' || action === 'unquiesce-vm') return typeof target.qga === 'string' && target.qga !== '';
    return false;
  }

  async run(action: ActionName, ctx: ActionContext): Promise<unknown> {
    switch (action) {
      case 'snapshot':
        return this.snapshot(ctx);
      case 'quiesce-vm':
        return this.freeze(ctx);
      case 'unquiesce-vm':
        return this.thaw(ctx);
      default:
        throw vmError('NOT_SUPPORTED', `the qemu plug-in does not perform '${action}'`);
    }
  }

  private async snapshot(ctx: ActionContext): Promise<void> {
    // Only pointInTime is used: a group backup hands a wrapper that waits for the group's moment.
    const fleece = ctx.state.get(FLEECE_KEY) as Pick<Fleece, 'pointInTime'> | undefined;
    if (!fleece) throw vmError('INVALID_ARGUMENT', `snapshot of ${ctx.target.vm}: no fleecing was prepared (the backup service prepares it before the workflow runs)`);
    const t0 = performance.now();
    await fleece.pointInTime();
    ctx.log(`point in time of every disk in one transaction: ${(performance.now() - t0).toFixed(1)} ms`);
  }

  private async agent(ctx: ActionContext): Promise<GuestAgentLike> {
    const kept = ctx.state.get(AGENT_KEY) as GuestAgentLike | undefined;
    if (kept) return kept;
    const qga = ctx.target.qga;
    if (!qga) {
      throw vmError('INVALID_ARGUMENT', `VM ${ctx.target.vm} has no guest agent configured: add one (vm add --qga unix:/path) or use the crash-consistent workflow`);
    }
    const open = ctx.state.get(GUEST_AGENT_OPENER_KEY) as ((address: string) => Promise<GuestAgentLike> | undefined) | undefined;
    const a = (await open?.(qga)) ?? (await GuestAgent.connect(qga, { timeoutMs: this.agentTimeoutMs }));
    ctx.state.set(AGENT_KEY, a);
    return a;
  }

  private async freeze(ctx: ActionContext): Promise<number> {
    const a = await this.agent(ctx);
    const n = await a.freeze();
    ctx.log(`guest filesystems frozen: ${n}`);
    return n;
  }

  private async thaw(ctx: ActionContext): Promise<number> {
    const a = await this.agent(ctx);
    try {
      const n = await a.thaw();
      ctx.log(`guest filesystems thawed: ${n}`);
      return n;
    } finally {
      ctx.state.delete(AGENT_KEY);
      await a.close().catch(() => {});
    }
  }
}
