// A network namespace standing for a hypervisor host across the network from the appliance: a
// veth pair, the host end (appliance side) in the root namespace with 10.<a>.<b>.1/30, the other
// end in the namespace with .2. Processes started with `inNs(...)` (QEMU, the agent) see only
// that link. UNIX sockets are filesystem objects, so QMP and NBD sockets still cross it (as on a
// shared filesystem). Deleted when the test ends, whatever happened: the namespace (which
// takes its veth end with it) and the host end.

import { execFileSync } from 'node:child_process';
import { runTool } from './run-tool.js';

export interface NetNs {
  name: string;
  /** The appliance's address on the link (root namespace). */
  hostIp: string;
  /** The namespace's address. */
  nsIp: string;
  /** The host end of the veth (tc and link up/down apply here). */
  hostIf: string;
  /** argv prefix that runs a command inside the namespace (ip netns exec execs: the PID is the command's). */
  exec: string[];
  /** Takes the link down (cut) or up again. */
  link(up: boolean): Promise<void>;
  /** Limits the link to `mbit` Mbit/s both ways (tc tbf on both ends); undefined removes it. */
  limit(mbit: number | undefined): Promise<void>;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Whether this machine lets us make namespaces (root, iproute2). */
export function netnsAvailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch {
    return 'ip netns is not available';
  }
  return undefined;
}

let seq = 0;

async function ip(args: string[]): Promise<void> {
  const r = await runTool('ip', args, { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

export async function makeNetNs(t: Teardown): Promise<NetNs> {
  const n = (process.pid % 200) * 64 + (seq++ % 64);
  const tag = `${process.pid.toString(36)}${seq}`;
  const name = `vva-${tag}`;
  const hostIf = `vvh${tag}`.slice(0, 15);
  const nsIf = `vvn${tag}`.slice(0, 15);
  // 10.231.0.0/16 cut into /30s by pid and sequence, so parallel test files do not collide.
  const a = 231;
  const b = Math.floor(n / 64) % 256;
  const c = (n % 64) * 4;
  const hostIp = `10.${a}.${b}.${c + 1}`;
  const nsIp = `10.${a}.${b}.${c + 2}`;
  t.teardown(async () => {
    await runTool('ip', ['netns', 'del', name], { timeoutMs: 20_000 });
    await runTool('ip', ['link', 'del', hostIf], { timeoutMs: 20_000 });
  });
  await ip(['netns', 'add', name]);
  await ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
  await ip(['link', 'set', nsIf, 'netns', name]);
  await ip(['addr', 'add', `${hostIp}/30`, 'dev', hostIf]);
  await ip(['link', 'set', hostIf, 'up']);
  await ip(['-n', name, 'addr', 'add', `${nsIp}/30`, 'dev', nsIf]);
  await ip(['-n', name, 'link', 'set', nsIf, 'up']);
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
  return {
    name,
    hostIp,
    nsIp,
    hostIf,
    exec: ['ip', 'netns', 'exec', name],
    link: (up) => ip(['link', 'set', hostIf, up ? 'up' : 'down']),
    limit: async (mbit) => {
      for (const [dev, ns] of [
        [hostIf, undefined],
        [nsIf, name],
      ] as const) {
        const pre = ns ? ['-n', ns] : [];
        await runTool('tc', [...pre, 'qdisc', 'del', 'dev', dev, 'root'], { timeoutMs: 20_000 });
        if (mbit === undefined) continue;
        const r = await runTool('tc', [...pre, 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '256kb', 'latency', '50ms'], { timeoutMs: 20_000 });
        if (r.code !== 0) throw new Error(`tc tbf on ${dev}: ${r.stderr.trim()}`);
      }
    },
  };
}
