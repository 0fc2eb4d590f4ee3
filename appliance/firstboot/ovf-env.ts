// Reading the OVF environment (DMTF DSP0243 section 11): the XML document a hypervisor hands a
// deployed appliance with the values of its ProductSection properties. VMware gives it through
// guestinfo (`vmware-rpctool 'info-get guestinfo.ovfEnv'`), others (and VMware, when asked) on a
// CD-ROM as `ovf-env.xml` (the "ISO transport"). Only the properties are read; the document is
// untrusted input, so nothing but key/value attributes of <Property> elements is taken from it.

export class OvfEnvError extends Error {
  readonly code = 'INVALID_ARGUMENT';
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decode(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? whole;
  });
}

/** Attributes of one start tag, by local name (the namespace prefix, oe: or another, dropped). */
function attributes(tag: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of tag.matchAll(/([\w.-]+:)?([\w.-]+)\s*=\s*("([^"]*)"|'([^']*)')/g)) {
    out.set(m[2], decode(m[4] ?? m[5] ?? ''));
  }
  return out;
}

/**
 * The properties of an ovf-env.xml document, key -> value. Throws OvfEnvError when the text is
 * not an OVF environment (no <Environment> element) or a property lacks its key.
 */
export function parseOvfEnv(xml: string): Map<string, string> {
  const text = xml.replace(/<!--[\s\S]*?-->/g, '');
  if (!/<([\w.-]+:)?Environment[\s/>]/.test(text)) {
    throw new OvfEnvError('not an OVF environment document: no <Environment> element');
  }
  const props = new Map<string, string>();
  for (const m of text.matchAll(/<([\w.-]+:)?Property\b([^>]*?)\/?>/g)) {
    const a = attributes(m[2]);
    const key = a.get('key');
    if (key === undefined || key === '') throw new OvfEnvError(`a <Property> without a key: ${m[0].slice(0, 120)}`);
    props.set(key, a.get('value') ?? '');
  }
  return props;
}
