// `vmvault agent list`: the external agents the appliance knows; `vmvault agent token
// create|list|revoke`: their tokens (issue 12). (`vmvault agent --appliance ...` runs an agent:
// bin/vmvault.js sends it to src/agent/main.ts.)

import { agentTokenCommand } from './agent-tokens.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatBytes, formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output, refuseOptions } from './context.js';

/** GET /api/v1/agents, as the CLI shows it (the schema is agentView in control/routes/agents.ts). */
interface AgentRow {
  name: string;
  version: string;
  hostname: string;
  addresses: string[];
  remoteAddress: string;
  state: string;
  streams: number;
  tasksRunning: number;
  lastSeen: string;
  bytesSent: number;
  bytesSaved: number;
}

export async function agentCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'token') return agentTokenCommand(ctx, rest);
  if (verb !== 'list') throw usage(`agent ${verb === undefined ? '' : JSON.stringify(verb)}: expected agent list (or agent --appliance URL ... to run one)`);
  refuseOptions(ctx.flags, 'agent list', []);
  expectArgs(rest, [], 'agent list');
  const { agents } = await ctx.client.get<{ agents: AgentRow[] }>('/agents');
  const human =
    agents.length === 0
      ? 'no agents yet (start one: vmvault agent --appliance URL --token T --name NAME)'
      : formatTable(
          ['NAME', 'ADDRESS', 'VERSION', 'STATE', 'TASKS', 'LAST SEEN', 'SENT', 'SAVED'],
          agents.map((a) => [a.name, a.remoteAddress, a.version, a.state, `${a.tasksRunning}/${a.streams}`, formatTime(a.lastSeen), formatBytes(a.bytesSent), formatBytes(a.bytesSaved)]),
        );
  output(ctx, human, agents);
  return EXIT.OK;
}
