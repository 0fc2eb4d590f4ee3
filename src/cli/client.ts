// The CLI's side of the control plane: where the appliance is, which token to send, and
// errors a person can act on ("is the appliance running?", "which token was refused?").

import path from 'node:path';
import { API_PREFIX, DEFAULT_DATA_DIR, DEFAULT_URL } from '../control/defaults.js';
import { readToken, TOKEN_FILE } from '../control/token.js';
import { CliError, usage } from './cli-error.js';

const REQUEST_TIMEOUT_MS = 30_000;

export interface TokenChoice {
  token: string | undefined;
  /** Where it came from, for messages: "--token", "VMVAULT_TOKEN", "vmvault-data/api-token". */
  source: string;
}

/** --token, then VMVAULT_TOKEN, then <data>/api-token (data: --data or ./vmvault-data). */
// An empty --token or VMVAULT_TOKEN is refused, not skipped: falling back to the token file
// would quietly use another credential than the one the person meant to give.
export async function resolveToken(opts: { token?: string; data?: string }, env: NodeJS.ProcessEnv): Promise<TokenChoice> {
  if (opts.token !== undefined) {
    if (opts.token.trim() === '') throw usage('--token is empty: give the API token, or leave --token out to use $VMVAULT_TOKEN or <data>/api-token');
    return { token: opts.token, source: '--token' };
  }
  const fromEnv = env.VMVAULT_TOKEN;
  if (fromEnv !== undefined) {
    if (fromEnv.trim() === '') throw usage('VMVAULT_TOKEN is set but empty: set it to the API token, or unset it to use <data>/api-token');
    return { token: fromEnv.trim(), source: 'VMVAULT_TOKEN' };
  }
  const dataDir = opts.data ?? DEFAULT_DATA_DIR;
  const file = path.join(dataDir, TOKEN_FILE);
  try {
    return { token: await readToken(dataDir), source: file };
  } catch (err) {
    // Unreadable (permissions) or malformed: say so rather than fail later with a bare 401.
    throw new CliError('UNAUTHORIZED', `cannot use the API token in ${file}: ${(err as Error).message}`);
  }
}

export function parseBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usage(`--url ${JSON.stringify(raw)} is not a URL (example: ${DEFAULT_URL})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usage(`--url must be http:// or https://, not ${url.protocol}`);
  return url.origin;
}

interface ApiErrorBody {
  error?: { code?: unknown; message?: unknown; job?: unknown };
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly tokenChoice: TokenChoice,
  ) {}

  get<T>(route: string): Promise<T> {
    return this.request<T>('GET', route);
  }

  post<T>(route: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', route, body);
  }

  delete<T>(route: string): Promise<T> {
    return this.request<T>('DELETE', route);
  }

  /**
   * GET `route` into the local file `to` (written as `<to>.partial`, renamed when whole); an
   * error answer is read as JSON like any other. Returns the bytes written and Last-Modified.
   */
  async download(route: string, to: string): Promise<{ bytes: number; lastModified?: string }> {
    const headers: Record<string, string> = {};
    if (this.tokenChoice.token !== undefined) headers.authorization = `Bearer ${this.tokenChoice.token}`;
    const target = new URL(`${this.baseUrl}${API_PREFIX}${route}`);
    const http = target.protocol === 'https:' ? await import('node:https') : await import('node:http');
    const fs = await import('node:fs');
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = http.request(target, { method: 'GET', headers, agent: false, timeout: REQUEST_TIMEOUT_MS }, resolve);
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })));
      req.on('error', reject);
      req.end();
    }).catch((err) => {
      throw this.unreachable(err);
    });
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      let text = '';
      for await (const c of res) text += String(c);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new CliError('PROTOCOL', `unexpected answer from ${this.baseUrl} (HTTP ${status}, not JSON)`, status);
      }
      throw this.failure(status, parsed as ApiErrorBody);
    }
    const partial = `${to}.partial`;
    const out = fs.createWriteStream(partial, { flags: 'wx', mode: 0o600 });
    let bytes = 0;
    try {
      const { pipeline } = await import('node:stream/promises');
      res.on('data', (c: Buffer) => (bytes += c.length));
      await pipeline(res, out);
      const want = Number(res.headers['content-length']);
      if (Number.isFinite(want) && want !== bytes) throw new CliError('IO', `the download of ${route} ended after ${bytes} of ${want} bytes`);
      fs.renameSync(partial, to);
    } catch (err) {
      fs.rmSync(partial, { force: true });
      if (err instanceof CliError) throw err;
      throw new CliError('IO', `writing ${to}: ${(err as Error).message}`);
    }
    return { bytes, lastModified: res.headers['last-modified'] };
  }

  /** `route` is below /api/v1 and already encoded (use seg() for names). */
  async request<T>(method: string, route: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.tokenChoice.token !== undefined) headers.authorization = `Bearer ${this.tokenChoice.token}`;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] = 'application/json';
    let res: { status: number; text: string };
    try {
      res = await send(`${this.baseUrl}${API_PREFIX}${route}`, method, headers, payload);
    } catch (err) {
      throw this.unreachable(err);
    }
    const ok = res.status >= 200 && res.status < 300;
    let parsed: unknown;
    try {
      parsed = res.text === '' ? undefined : JSON.parse(res.text);
    } catch {
      throw new CliError('PROTOCOL', `unexpected answer from ${this.baseUrl} (HTTP ${res.status}, not JSON): is that a vmvault appliance?`, res.status);
    }
    if (ok) return parsed as T;
    throw this.failure(res.status, parsed as ApiErrorBody | undefined);
  }

  private failure(status: number, body: ApiErrorBody | undefined): CliError {
    const code = typeof body?.error?.code === 'string' ? body.error.code : undefined;
    const message = typeof body?.error?.message === 'string' ? body.error.message : undefined;
    if (code === undefined || message === undefined) {
      return new CliError('PROTOCOL', `unexpected answer from ${this.baseUrl}: HTTP ${status}`, status);
    }
    if (code === 'UNAUTHORIZED') {
      const hint =
        this.tokenChoice.token === undefined
          ? `no API token: pass --token, set VMVAULT_TOKEN, or point --data at the appliance's data directory (no ${this.tokenChoice.source})`
          : `the appliance refused the API token from ${this.tokenChoice.source}`;
      return new CliError(code, hint, status);
    }
    const job = typeof body?.error?.job === 'string' ? ` (job ${body.error.job}; see \`vmvault jobs ${body.error.job}\`)` : '';
    return new CliError(code, `${message}${job}`, status);
  }

  private unreachable(err: unknown): CliError {
    const e = err as { name?: string; code?: string; cause?: { code?: string } };
    if (e.name === 'TimeoutError') {
      return new CliError('UNREACHABLE', `the appliance at ${this.baseUrl} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
    }
    const why = e.code ?? e.cause?.code ?? (err as Error).message;
    return new CliError('UNREACHABLE', `cannot reach the appliance at ${this.baseUrl}: is \`vmvault appliance\` running? (${why})`);
  }
}

// node:http rather than fetch(): fetch loads undici (tens of ms of a command's start) and keeps
// its connection alive, which holds the process open for a few hundred ms after the answer.
// One request per connection (agent: false sends Connection: close) is all a command needs.
function send(url: string, method: string, headers: Record<string, string>, payload: string | undefined): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  const load = target.protocol === 'https:' ? import('node:https') : import('node:http');
  return load.then(
    (http) =>
      new Promise((resolve, reject) => {
        const req = http.request(target, { method, headers, agent: false, timeout: REQUEST_TIMEOUT_MS }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })));
        req.on('error', reject);
        req.end(payload);
      }),
  );
}

/** One path segment, encoded. */
export function seg(name: string): string {
  return encodeURIComponent(name);
}
