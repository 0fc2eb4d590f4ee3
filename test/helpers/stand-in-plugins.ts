// Stand-ins for the VM and the database in workflow tests: real executables (shell scripts
// speaking the plug-in protocol of src/plugins/script/PROTOCOL.md), not mocks. Each appends
// "NAME:ACTION" to one shared calls file, so a test sees the order across plug-ins, and obeys
// marker files a test creates: fail-ACTION (answers ok:false), exit-ACTION (exits 3 with
// stderr), hang-ACTION (sleeps in a child process, recording its process group in
// pgid-ACTION). Markers are per plug-in: DIR/NAME/fail-ACTION.

import fs from 'node:fs';
import path from 'node:path';

export interface StandIns {
  dir: string;
  pluginsDir: string;
  calls(): string[];
  mark(plugin: string, kind: 'fail' | 'exit' | 'hang', action: string): void;
  unmark(plugin: string, kind: 'fail' | 'exit' | 'hang', action: string): void;
  /** Process groups of the hanging scripts started so far. */
  hangingGroups(): number[];
}

/** Writes the plug-ins `specs` (name -> actions) into DIR/plugins. */
export function makeStandIns(dir: string, specs: Record<string, string[]>): StandIns {
  const pluginsDir = path.join(dir, 'plugins');
  fs.mkdirSync(pluginsDir, { recursive: true });
  const callsFile = path.join(dir, 'calls');
  fs.writeFileSync(callsFile, '');
  for (const [name, actions] of Object.entries(specs)) {
    const state = path.join(dir, name);
    fs.mkdirSync(state, { recursive: true });
    const script = `#!/bin/sh
S='${state}'
if [ "$1" = describe ]; then
  echo '{"protocol":1,"name":"${name}","actions":${JSON.stringify(actions)}}'
  exit 0
fi
A="$VMVAULT_ACTION"
cat > "$S/stdin-$A.json"
echo "${name}:$A" >> '${callsFile}'
if [ -e "$S/hang-$A" ]; then
  echo $$ > "$S/pgid-$A" # the script leads its own group (spawned detached)
  sleep 1000
fi
if [ -e "$S/exit-$A" ]; then echo "injected exit in $A" >&2; exit 3; fi
if [ -e "$S/fail-$A" ]; then echo '{"ok":false,"error":"injected failure in '"$A"'"}'; exit 0; fi
echo '{"ok":true,"result":{"did":"'"$A"'"}}'
`;
    const file = path.join(pluginsDir, name);
    fs.writeFileSync(file, script, { mode: 0o755 });
  }
  return {
    dir,
    pluginsDir,
    calls: () => fs.readFileSync(callsFile, 'utf8').split('\n').filter((l) => l !== ''),
    mark: (p, kind, action) => fs.writeFileSync(path.join(dir, p, `${kind}-${action}`), ''),
    unmark: (p, kind, action) => fs.rmSync(path.join(dir, p, `${kind}-${action}`), { force: true }),
    hangingGroups: () => {
      const out: number[] = [];
      for (const name of Object.keys(specs)) {
        for (const f of fs.readdirSync(path.join(dir, name))) {
          if (!f.startsWith('pgid-')) continue;
          // A file caught half-written reads empty: never let that become kill(0), our own group.
          const g = Number(fs.readFileSync(path.join(dir, name, f), 'utf8').trim());
          if (Number.isInteger(g) && g > 1) out.push(g);
        }
      }
      return out;
    },
  };
}

/**
 * Whether a live (not zombie) process of group `pgid` exists. Reads /proc rather than
 * kill(-pgid, 0), which also counts a killed grandchild its new parent has not reaped yet.
 */
export function groupAlive(pgid: number): boolean {
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing paren.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}

/**
 * Whether group `pgid` is gone within `ms` (polled). A SIGKILLed process closes its pipes early
 * in its exit, so the runner can report it killed while /proc still shows it running the rest
 * of its exit: a check right after the report raced that (a CI failure of script-plugin under
 * load). A group that was not killed (a `sleep 1000`) stays, and this says false.
 */
export async function groupGone(pgid: number, ms = 3000): Promise<boolean> {
  const until = Date.now() + ms;
  while (groupAlive(pgid)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Kills what a test's hanging scripts left (e.g. after SIGKILL of the node process that ran them). */
export function killGroups(groups: number[]): void {
  for (const g of groups) {
    if (!(Number.isInteger(g) && g > 1)) continue;
    try { process.kill(-g, 'SIGKILL'); } catch { /* gone */ }
  }
}
