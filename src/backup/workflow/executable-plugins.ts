// The plug-ins folder: every executable file in it is a plug-in speaking the executable
// protocol (src/plugins/script/PROTOCOL.md). A file that does not describe itself properly is
// reported and left out; it never stops the others from loading.

import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError } from '../../errors.js';
import { ExecutablePlugin } from '../../plugins/script/executable-plugin.js';

export interface PluginsFolder {
  plugins: ExecutablePlugin[];
  /** One line per file left out, naming it and why. */
  problems: string[];
  /** Every action the loaded plug-ins declare (for loadWorkflows' extraActions). */
  actions: string[];
}

/** Loads `dir`'s executables (sorted by file name). A missing folder has no plug-ins. */
export async function loadPluginsFolder(dir: string, opts: { describeTimeoutMs?: number; log?: (l: string) => void; reservedNames?: string[] } = {}): Promise<PluginsFolder> {
  const result: PluginsFolder = { plugins: [], problems: [], actions: [] };
  let names: string[];
  try {
    names = (await fs.readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return result;
    throw fromSystemError(err, `reading the plug-ins folder ${dir}`);
  }
  const taken = new Set(opts.reservedNames ?? []);
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const file = path.join(dir, n);
    const st = await fs.stat(file).catch(() => null);
    if (!st?.isFile()) continue;
    if ((st.mode & 0o111) === 0) {
      result.problems.push(`plug-ins folder: ${file} is not executable; chmod +x it to use it`);
      continue;
    }
    try {
      const p = await ExecutablePlugin.load(file, { timeoutMs: opts.describeTimeoutMs, log: opts.log });
      if (taken.has(p.name)) {
        result.problems.push(`plug-ins folder: ${file} calls itself '${p.name}', a name already taken; rename it`);
        continue;
      }
      taken.add(p.name);
      result.plugins.push(p);
      for (const a of p.description.actions) if (!result.actions.includes(a)) result.actions.push(a);
    } catch (err) {
      result.problems.push(`plug-ins folder: ${file} left out: ${(err as Error).message}`);
    }
  }
  for (const line of result.problems) opts.log?.(line);
  return result;
}
