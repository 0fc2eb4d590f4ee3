// What first boot configures, checked from the OVF properties (ovf/vmvault.ovf.in declares them
// in its ProductSection). A bad value is reported and left out, never half-applied: a bad
// address falls back to DHCP rather than leaving the appliance unreachable with no word why.

import net from 'node:net';

export interface StaticNetwork {
  address: string;
  prefix: number;
  gateway?: string;
  dns: string[];
}

export interface Settings {
  hostname: string;
  /** undefined: DHCP. */
  network?: StaticNetwork;
  ntp: string[];
  adminToken?: string;
  adminPassword?: string;
  /** Problems found; each names the property and what was wrong. */
  problems: string[];
}

export const DEFAULT_HOSTNAME = 'vmvault';
const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const TOKEN_SHAPE = /^[\x21-\x7e]{16,256}$/;

function list(v: string | undefined): string[] {
  return (v ?? '').split(/[\s,]+/).filter((x) => x !== '');
}

function netmaskToPrefix(mask: string): number | undefined {
  if (/^\d{1,2}$/.test(mask)) {
    const n = Number(mask);
    return n >= 1 && n <= 32 ? n : undefined;
  }
  if (!net.isIPv4(mask)) return undefined;
  const bits = mask.split('.').map((o) => Number(o).toString(2).padStart(8, '0')).join('');
  return /^1+0*$/.test(bits) ? bits.indexOf('0') === -1 ? 32 : bits.indexOf('0') : undefined;
}

/** Property keys (ovf/vmvault.ovf.in): vmvault.hostname, vmvault.ip (A.B.C.D or A.B.C.D/N),
 * vmvault.netmask, vmvault.gateway, vmvault.dns, vmvault.ntp, vmvault.admin_token,
 * vmvault.admin_password. Empty values mean "not set". */
export function settingsFrom(props: Map<string, string>): Settings {
  const problems: string[] = [];
  const get = (k: string): string | undefined => {
    const v = props.get(`vmvault.${k}`)?.trim();
    return v === undefined || v === '' ? undefined : v;
  };
  let hostname = DEFAULT_HOSTNAME;
  const h = get('hostname');
  if (h !== undefined) {
    if (HOSTNAME.test(h)) hostname = h.toLowerCase();
    else problems.push(`vmvault.hostname "${h}" is not a host name (letters, digits, hyphens, dots): using "${DEFAULT_HOSTNAME}"`);
  }
  let network: StaticNetwork | undefined;
  const ip = get('ip');
  if (ip !== undefined) {
    const [addr, slash] = ip.split('/', 2);
    const prefix = netmaskToPrefix(slash ?? get('netmask') ?? '24');
    const gateway = get('gateway');
    const dns = list(get('dns'));
    if (!net.isIPv4(addr)) problems.push(`vmvault.ip "${ip}" is not an IPv4 address: using DHCP`);
    else if (prefix === undefined) problems.push(`vmvault.netmask "${slash ?? get('netmask')}" is not a netmask or prefix length: using DHCP`);
    else if (gateway !== undefined && !net.isIPv4(gateway)) problems.push(`vmvault.gateway "${gateway}" is not an IPv4 address: using DHCP`);
    else if (dns.some((d) => !net.isIP(d))) problems.push(`vmvault.dns "${get('dns')}" holds something that is not an IP address: using DHCP`);
    else network = { address: addr, prefix, gateway, dns };
  }
  const ntp = list(get('ntp'));
  const bad = ntp.filter((s) => !net.isIP(s) && !HOSTNAME.test(s));
  if (bad.length > 0) problems.push(`vmvault.ntp: "${bad.join(', ')}" not a server name or address: left out`);
  let adminToken = get('admin_token');
  if (adminToken !== undefined && !TOKEN_SHAPE.test(adminToken)) {
    problems.push('vmvault.admin_token must be 16..256 printable characters without spaces: a random token is made instead');
    adminToken = undefined;
  }
  const adminPassword = props.get('vmvault.admin_password') || undefined;
  if (adminPassword !== undefined && /[\n\r:]/.test(adminPassword)) {
    problems.push('vmvault.admin_password holds a newline or colon: not set');
  }
  return {
    hostname,
    network,
    ntp: ntp.filter((s) => !bad.includes(s)),
    adminToken,
    adminPassword: adminPassword !== undefined && /[\n\r:]/.test(adminPassword) ? undefined : adminPassword,
    problems,
  };
}
