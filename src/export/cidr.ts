// Client allow-lists: IPv4 and IPv6 networks in CIDR form ("10.0.0.0/24", "192.0.2.7",
// "2001:db8::/32"). Parsed strictly and written back in one canonical form, because the same
// text goes into two servers' configs (ganesha's CLIENT block, Samba's hosts allow) and a typo
// there would silently allow or refuse the wrong hosts.

import net from 'node:net';
import { vmError } from '../errors.js';

/** At most this many entries per export: a list longer than this is a mistake, not a policy. */
export const MAX_CLIENTS = 64;

/** "10.0.0.7" -> "10.0.0.7/32"; "10.0.0.0/24" stays; refuses host bits set ("10.0.0.1/24"). */
export function normalizeCidr(text: unknown): string {
  if (typeof text !== 'string' || text.trim() === '') throw vmError('INVALID_ARGUMENT', `client ${JSON.stringify(text)} is not an address or network (expected CIDR, e.g. 10.0.0.0/24)`);
  const s = text.trim();
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = net.isIP(addr);
  if (family === 0) throw vmError('INVALID_ARGUMENT', `client ${JSON.stringify(s)}: ${JSON.stringify(addr)} is not an IPv4 or IPv6 address (expected CIDR, e.g. 10.0.0.0/24)`);
  const bits = family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) throw vmError('INVALID_ARGUMENT', `client ${JSON.stringify(s)}: prefix length must be 0..${bits}`);
    prefix = Number(p);
  }
  const bytes = toBytes(addr, family);
  for (let i = prefix; i < bits; i++) {
    if (bytes[i >> 3] & (0x80 >> (i & 7))) {
      throw vmError('INVALID_ARGUMENT', `client ${JSON.stringify(s)}: address has bits set beyond the /${prefix} prefix (did you mean ${fromBytes(mask(bytes, prefix), family)}/${prefix}?)`);
    }
  }
  return `${fromBytes(bytes, family)}/${prefix}`;
}

/** A comma-separated list (the CLI's --clients) or an array (the API), normalized, deduplicated. */
export function parseClients(input: unknown): string[] {
  const items = typeof input === 'string' ? input.split(',') : Array.isArray(input) ? input : undefined;
  if (items === undefined) throw vmError('INVALID_ARGUMENT', 'clients must be a list of CIDR networks, e.g. ["10.0.0.0/24"]');
  const out: string[] = [];
  for (const item of items) {
    const c = normalizeCidr(item);
    if (!out.includes(c)) out.push(c);
  }
  if (out.length === 0) throw vmError('INVALID_ARGUMENT', 'clients is empty: name at least one network, e.g. 10.0.0.0/24');
  if (out.length > MAX_CLIENTS) throw vmError('INVALID_ARGUMENT', `clients lists ${out.length} networks; the limit is ${MAX_CLIENTS}`);
  return out;
}

function toBytes(addr: string, family: number): Uint8Array {
  if (family === 4) return Uint8Array.from(addr.split('.').map(Number));
  // Expand "::" and an embedded IPv4 tail, then read 8 groups.
  let a = addr;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (v4) {
    const b = v4[1].split('.').map(Number);
    a = a.slice(0, -v4[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined ? [] : tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

function fromBytes(b: Uint8Array, family: number): string {
  if (family === 4) return Array.from(b).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i] << 8) | b[i + 1]).toString(16));
  // Canonical form (RFC 5952): the longest run of two or more zero groups becomes "::".
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function mask(b: Uint8Array, prefix: number): Uint8Array {
  const out = Uint8Array.from(b);
  for (let i = prefix; i < out.length * 8; i++) out[i >> 3] &= ~(0x80 >> (i & 7));
  return out;
}
