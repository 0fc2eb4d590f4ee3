// `vmvault export`: shares exported to hypervisors over NFS and SMB.
//   export list [--json]
//   export nfs|smb enable <share> [--clients CIDR,...]
//   export nfs|smb disable <share>
//   export smb password [--user NAME]     (the password from $VMVAULT_SMB_PASSWORD or stdin's first line)

import type { ExportView } from '../../control/services.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output } from './context.js';

export async function exportCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [first, verb, ...rest] = args;
  if (first === 'list') {
    expectArgs(args.slice(1), [], 'export list');
    refuse(ctx, 'export list', []);
    const { exports } = await ctx.client.get<{ exports: ExportView[] }>('/exports');
    output(ctx, exports.length === 0 ? 'no exports (vmvault export nfs|smb enable <share> --clients CIDR,...)' : exportsTable(exports), exports);
    return EXIT.OK;
  }
  if (first !== 'nfs' && first !== 'smb') throw usage(`export: expected list, nfs or smb, got ${first === undefined ? 'nothing' : JSON.stringify(first)}`);
  const proto = first;
  switch (verb) {
    case 'enable': {
      const [share] = expectArgs(rest, ['share'], `export ${proto} enable`);
      refuse(ctx, `export ${proto} enable`, ['clients']);
      const body = ctx.flags.clients === undefined ? undefined : { clients: ctx.flags.clients.split(',').map((c) => c.trim()) };
      const v = await ctx.client.post<ExportView>(`/exports/${proto}/${seg(share)}`, body);
      output(ctx, `exported ${share} over ${proto.toUpperCase()} at ${v.url} to ${v.clients.join(', ')} (${v.state}${v.detail ? `: ${v.detail}` : ''})`, v);
      return EXIT.OK;
    }
    case 'disable': {
      const [share] = expectArgs(rest, ['share'], `export ${proto} disable`);
      refuse(ctx, `export ${proto} disable`, []);
      await ctx.client.delete(`/exports/${proto}/${seg(share)}`);
      output(ctx, `no longer exporting ${share} over ${proto.toUpperCase()}`, { disabled: share, protocol: proto });
      return EXIT.OK;
    }
    case 'password': {
      if (proto !== 'smb') throw usage('export nfs has no password (NFS clients are allowed by address: --clients)');
      expectArgs(rest, [], 'export smb password');
      refuse(ctx, 'export smb password', ['user']);
      const password = ctx.io.env.VMVAULT_SMB_PASSWORD ?? (await readFirstLine());
      if (password === '') throw usage('export smb password: give the password on stdin (one line) or in $VMVAULT_SMB_PASSWORD');
      const r = await ctx.client.request<{ user: string }>('PUT', '/exports/smb/password', { password, ...(ctx.flags.user === undefined ? {} : { user: ctx.flags.user }) });
      output(ctx, `SMB password of ${r.user} set`, r);
      return EXIT.OK;
    }
    default:
      throw usage(`export ${proto}: expected enable, disable${proto === 'smb' ? ' or password' : ''}, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}

function refuse(ctx: CommandContext, command: string, takes: Array<'clients' | 'user'>): void {
  for (const k of ['clients', 'user'] as const) {
    if (ctx.flags[k] !== undefined && !takes.includes(k)) throw usage(`${command} takes no --${k}`);
  }
}

async function readFirstLine(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('SMB password: ');
  let text = '';
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}

function exportsTable(list: ExportView[]): string {
  return formatTable(
    ['PROTOCOL', 'SHARE', 'URL', 'CLIENTS', 'STATE', 'SINCE'],
    list.map((v) => [v.protocol, v.share, v.url, v.clients.join(','), v.state, formatTime(v.enabledAt)]),
  );
}
