// `vmvault agent list`: the external agents the appliance knows; `vmvault agent token
// create|list|revoke`: their tokens (issue 12). (`vmvault agent --appliance ...` runs an agent:
// bin/vmvault.js sends it to src/agent/main.ts.)

import { seg } from '../client.js';
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
  if (verb === 'token') return tokenCommand(ctx, rest);
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

async function tokenCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  refuseOptions(ctx.flags, `agent token ${verb ?? ''}`.trim(), []);
  switch (verb) {
    case 'create': {
      const [name] = expectArgs(rest, ['name'], 'agent token create');
      const made = await ctx.client.post<{ name: string; token: string; trusted: boolean }>('/agents/tokens', { name });
      output(ctx, `agent token ${made.name} (shown once; give it to the agent as --token):\n${made.token}`, made);
      return EXIT.OK;
    }
    case 'list': {
      expectArgs(rest, [], 'agent token list');
      const list = await ctx.client.get<Array<{ name: string; trusted: boolean; created: string }>>('/agents/tokens');
      output(ctx, list.length === 0 ? 'no agent tokens (vmvault agent token create NAME)' : formatTable(['NAME', 'TRUSTED', 'CREATED'], list.map((x) => [x.name, x.trusted ? 'yes' : 'no', formatTime(x.created)])), list);
      return EXIT.OK;
    }
    case 'revoke': {
      const [name] = expectArgs(rest, ['name'], 'agent token revoke');
      await ctx.client.delete(`/agents/tokens/${seg(name)}`);
      output(ctx, `revoked agent token ${name}`, { revoked: name });
      return EXIT.OK;
    }
    default:
      throw usage(`agent token ${verb === undefined ? '' : JSON.stringify(verb)}: expected create <name>, list or revoke <name>`);
  }
}
