// `vmvault agent token create|list|revoke`: agent tokens, made and revoked with the admin token.
// The token is printed once, at creation; the appliance keeps only its digest.

import type { AgentTokenInfo } from '../../control/agent-tokens.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output } from './context.js';

export async function agentTokenCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'create': {
      const [name] = expectArgs(rest, ['name'], 'agent token create');
      if (ctx.flags.trusted && ctx.flags.replication) throw usage('agent token create: --trusted and --replication do not go together (a replication token is answered within its own shares)');
      const made = await ctx.client.post<{ name: string; token: string; trusted: boolean }>('/agents/tokens', { name, ...(ctx.flags.trusted ? { trusted: true } : {}), ...(ctx.flags.replication ? { scope: 'replication' } : {}) });
      output(
        ctx,
        ctx.flags.replication
          ? `${made.token}\n(replication token ${made.name}; shown only now: give it to the sending appliance: vmvault destination add NAME --appliance URL --token ...)`
          : `${made.token}\n(agent token ${made.name}${made.trusted ? ', trusted: store-wide dedup answers' : ''}; shown only now: give it to the agent with --token)`,
        made,
      );
      return EXIT.OK;
    }
    case 'list': {
      expectArgs(rest, [], 'agent token list');
      const list = await ctx.client.get<AgentTokenInfo[]>('/agents/tokens');
      output(
        ctx,
        list.length === 0 ? 'no agent tokens (vmvault agent token create <name>)' : formatTable(['NAME', 'TRUSTED', 'CREATED'], list.map((t) => [t.name, t.trusted ? 'yes' : 'no', formatTime(t.created)])),
        list,
      );
      return EXIT.OK;
    }
    case 'revoke': {
      const [name] = expectArgs(rest, ['name'], 'agent token revoke');
      await ctx.client.delete(`/agents/tokens/${seg(name)}`);
      output(ctx, `revoked agent token ${name}`, { revoked: name });
      return EXIT.OK;
    }
    default:
      throw usage(`agent token: expected create, list or revoke, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}
