// Fastify validates requests with AJV, whose messages name the validator's view of a request
// ("body/name must NOT have fewer than 1 characters", "params/id must match pattern ..."). A
// person needs what was wrong in their terms: which name, which field, what is allowed. Each
// schema field carries a `title` (schemas.ts) that names it here; the server runs AJV with
// `verbose` so an error carries the value and the schema it failed.

/** One AJV error as Fastify passes it on (verbose: data, schema, parentSchema are present). */
export interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
  data?: unknown;
  parentSchema?: { title?: string; description?: string; properties?: Record<string, { title?: string }>; enum?: unknown[] };
}

export type ValidationContext = 'body' | 'params' | 'querystring' | 'headers' | string;

// What a value must look like, where the rule is a pattern no person reads as such.
const PATTERN_HINTS: Record<string, string> = {
  'job id': 'job ids are 12 hex digits (vmvault jobs lists them)',
};

export function validationMessage(errors: readonly AjvError[], context: ValidationContext): string {
  const e = errors[0];
  if (e === undefined) return 'the request is not valid';
  const key = e.instancePath.split('/').filter(Boolean).map(unescapePointer).join('.');
  const where = place(context);
  switch (e.keyword) {
    case 'required': {
      const missing = String(e.params.missingProperty);
      const title = e.parentSchema?.properties?.[missing]?.title;
      return `${where} needs "${missing}"${title === undefined ? '' : ` (the ${title})`}`;
    }
    case 'additionalProperties': {
      const extra = String(e.params.additionalProperty);
      const known = Object.keys(e.parentSchema?.properties ?? {});
      const takes = known.length === 0 ? `takes ${context === 'querystring' ? 'none' : 'no fields'}` : `takes ${known.map((k) => `"${k}"`).join(', ')}`;
      if (context === 'querystring') return `unknown query parameter "${extra}"; this route ${takes}`;
      return `${where} has an unknown field "${extra}"; it ${takes}`;
    }
  }
  if (key === '') {
    if (e.keyword === 'type') return `${where} must be a JSON ${e.params.type}, not ${jsonType(e.data)}`;
    return `${where} is not valid`;
  }
  const label = e.parentSchema?.title ?? fallbackLabel(context, key);
  switch (e.keyword) {
    case 'type':
      return `the ${label} must be a ${typeWord(e.params.type)}, not ${jsonType(e.data)}`;
    case 'minLength':
      return e.params.limit === 1 ? `the ${label} must not be empty` : `the ${label} must be at least ${e.params.limit} characters`;
    case 'maxLength':
      return `the ${label} must be at most ${e.params.limit} characters`;
    case 'enum': {
      const allowed = (e.params.allowedValues as unknown[] | undefined) ?? e.parentSchema?.enum ?? [];
      return `the ${label} must be ${allowed.map((v) => JSON.stringify(v)).join(' or ')}, not ${show(e.data)}`;
    }
    case 'pattern': {
      const hint = PATTERN_HINTS[label] ?? e.parentSchema?.description;
      return `${show(e.data)} is not a ${label}${hint === undefined ? '' : `: ${hint}`}`;
    }
    default: {
      const about = e.parentSchema?.description;
      return `the ${label} is not valid${about === undefined ? '' : ` (${about.replace(/\.$/, '')})`}`;
    }
  }
}

function place(context: ValidationContext): string {
  if (context === 'body') return 'the request body';
  if (context === 'querystring') return 'the query string';
  if (context === 'params') return 'the URL';
  return `the request ${context}`;
}

function fallbackLabel(context: ValidationContext, key: string): string {
  if (context === 'querystring') return `query parameter "${key}"`;
  if (context === 'params') return `"${key}" in the URL`;
  return `field "${key}"`;
}

function unescapePointer(s: string): string {
  return s.replace(/~1/g, '/').replace(/~0/g, '~');
}

function typeWord(t: unknown): string {
  const types = Array.isArray(t) ? t : [t];
  return types.map((x) => (x === 'integer' ? 'whole number' : x === 'boolean' ? 'boolean (true or false)' : String(x))).join(' or ');
}

function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${show(v)}`;
  if (v === undefined) return 'nothing';
  return `${typeof v} ${String(v)}`;
}

/** The offending value, quoted and cut short: a 20 KiB name is not worth echoing. */
function show(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  const cut = s.length > 60 ? `${s.slice(0, 60)}...` : s;
  return JSON.stringify(cut);
}
