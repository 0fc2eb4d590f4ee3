// The files first boot writes, as text, from checked Settings: pure, so the tests compare them
// whole. apply.ts puts them in place.

import type { Settings } from './settings.js';

/** /etc/systemd/network/10-vmvault.network: every Ethernet port, static or DHCP. */
export function networkdFile(s: Settings): string {
  const head = '# Written by vmvault first boot from the OVF properties; rewritten at every boot.\n[Match]\nType=ether\n\n[Network]\n';
  if (s.network === undefined) return `${head}DHCP=yes\n\n[DHCPv4]\nSendHostname=yes\nHostname=${s.hostname}\n`;
  const n = s.network;
  return `${head}Address=${n.address}/${n.prefix}\n${n.gateway ? `Gateway=${n.gateway}\n` : ''}${n.dns.map((d) => `DNS=${d}\n`).join('')}`;
}

/** /etc/resolv.conf for a static address (DHCP: networkd's lease has it, written by the hook). */
export function resolvConf(s: Settings): string | undefined {
  if (s.network === undefined || s.network.dns.length === 0) return undefined;
  return `# Written by vmvault first boot (vmvault.dns)\n${s.network.dns.map((d) => `nameserver ${d}\n`).join('')}`;
}

export function hostsFile(s: Settings): string {
  const short = s.hostname.split('.')[0];
  const names = short === s.hostname ? s.hostname : `${s.hostname} ${short}`;
  const self = s.network ? s.network.address : '127.0.1.1';
  return `127.0.0.1\tlocalhost\n${self}\t${names}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

/** /etc/systemd/timesyncd.conf.d/vmvault.conf; undefined keeps Debian's pool servers. */
export function timesyncdConf(s: Settings): string | undefined {
  if (s.ntp.length === 0) return undefined;
  return `# Written by vmvault first boot (vmvault.ntp)\n[Time]\nNTP=${s.ntp.join(' ')}\n`;
}

/** The console screen (/etc/issue, shown by getty on tty1 and ttyS0 above the login prompt). */
export function issueText(o: { hostname: string; addresses: string[]; port: number; fingerprint: string | undefined; problems: string[] }): string {
  const urls = o.addresses.length > 0 ? o.addresses.map((a) => `    https://${a}:${o.port}/api/v1/health\n`).join('') : '    (no address yet: check the network; this screen is redrawn at each boot)\n';
  const lines = [
    '',
    `vmvault backup appliance - ${o.hostname}`,
    '',
    'Control plane:',
    urls.trimEnd(),
    '',
    `TLS certificate SHA-256 fingerprint:`,
    `    ${o.fingerprint ?? '(none yet)'}`,
    '',
    'API token: /var/lib/vmvault/api-token (vmvault.admin_token at deploy time)',
    ...(o.problems.length > 0 ? ['', 'First boot found problems in the OVF properties:', ...o.problems.map((p) => `  - ${p}`)] : []),
    '',
    '',
  ];
  // getty expands backslash escapes in /etc/issue: keep ours literal.
  return lines.join('\n').replace(/\\/g, '\\\\');
}
