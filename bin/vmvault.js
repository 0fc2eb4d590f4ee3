#!/usr/bin/env node
// The `vmvault` command. `vmvault appliance ...` runs the appliance (src/appliance.ts, the
// composition root, which imports every layer); anything else is the CLI, which only talks HTTP.
// Both are loaded from dist/, so the TypeScript must be built first (npm install does it).

const argv = process.argv.slice(2);
const isAppliance = argv[0] === 'appliance';
// `vmvault agent --appliance ...` runs an agent (src/agent/, which loads no appliance layer);
// `vmvault agent list` and `vmvault agent token ...` are CLI commands.
const isAgent = argv[0] === 'agent' && !['list', 'token'].includes(argv[1]);
// `vmvault dr restore|verify` run without an appliance (src/appliance-dr.ts); `dr copy` is a CLI command.
const isDrLocal = argv[0] === 'dr' && ['restore', 'verify'].includes(argv[1]);
const target = new URL(isAppliance ? '../dist/src/appliance.js' : isAgent ? '../dist/src/agent/main.js' : isDrLocal ? '../dist/src/appliance-dr.js' : '../dist/src/cli/main.js', import.meta.url);

let mod;
try {
  mod = await import(target.href);
} catch (err) {
  // Only our own entry point missing means "not built"; a missing dependency deeper down is a
  // real error and keeps its stack.
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes(decodeURIComponent(target.pathname))) {
    process.stderr.write(`vmvault: ${target.pathname} is missing; build first: npm install (or npm run build)\n`);
    process.exit(70);
  }
  throw err;
}

// The appliance receives the arguments after `appliance`; the CLI all of them.
const code = await mod.main(isAppliance || isAgent || isDrLocal ? argv.slice(1) : argv);
if (typeof code === 'number') process.exitCode = code;
