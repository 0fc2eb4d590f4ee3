// V8 flags of vmvault's long-running processes, the appliance and the agent. bin/vmvault.js
// sets them before it loads any of their code; the CLI's commands and `dr restore|verify` go
// without (the CLI's start time stays as it was; the dr tools were not measured). Why each one,
// with the measurements: tools/PERFORMANCE.md, "gcflags"; ARCHITECTURE.md, "V8 flags".
//
// --always-sparkplug: every function gets Sparkplug's baseline machine code when it is first
//   compiled, instead of running in the Ignition interpreter until it has been called often
//   enough to earn it. A fresh appliance or agent runs much of its first backup's JavaScript
//   (Fastify, TLS, the transfer frames, NBD, the ingest loop) cold, and the agent path is two
//   such processes; Sparkplug is one fast pass over the bytecode, with no optimisation to undo.
//   The price: the appliance's loaded modules take ~2 MiB more of V8's code space (0.7 -> 2.8
//   MiB, RSS +13 MiB after loading them).
//
// Only flags that take effect when set after node has started belong here (this one applies to
// every function compiled after it is set: test/v8-flags.test.ts checks that it does). V8's heap
// sizes (--max-semi-space-size and the like) are fixed when the heap is made, so they would have
// to be on node's command line (the shebang, the systemd unit); none of them paid (PERFORMANCE.md).

import v8 from 'node:v8';

export const V8_FLAGS = ['--always-sparkplug'];

/** Sets V8_FLAGS in this process; returns them. Call before loading the code they are for. */
export function applyV8Flags() {
  for (const flag of V8_FLAGS) v8.setFlagsFromString(flag);
  return V8_FLAGS;
}
