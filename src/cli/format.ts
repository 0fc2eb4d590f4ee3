// Numbers as people read them: binary units, ratios, durations, aligned tables.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** 1536 -> "1.50 KiB"; three significant digits above 1 KiB. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '-';
  const sign = n < 0 ? '-' : '';
  let v = Math.abs(n);
  if (v < 1024) return `${sign}${Math.round(v)} B`;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  // 1023.9 KiB rounds to "1024 KiB"; say "1.00 MiB" instead.
  if (v >= 999.5 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${sign}${v.toFixed(digits)} ${UNITS[u]}`;
}

/**
 * 11143 -> "11,143". Not toLocaleString: its first call loads ICU data, about 40 ms of a
 * command that should answer in a fraction of a second.
 */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return '-';
  const s = String(Math.round(Math.abs(n)));
  return `${n < 0 ? '-' : ''}${s.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}`;
}

/** (1, 'file') -> "1 file"; (2, 'file') -> "2 files"; counts over 999 get separators. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/** 3.24 -> "3.2x"; nothing stored yet -> "-". */
export function formatRatio(r: number): string {
  if (!Number.isFinite(r) || r <= 0) return '-';
  return `${r >= 100 ? r.toFixed(0) : r.toFixed(1)}x`;
}

/** 3725 -> "1:02:05"; 65 -> "1:05". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** A job's progress unit; unknown ones (from a newer appliance) are shown as they come. */
export type Unit = 'bytes' | 'containers' | 'files' | 'items' | (string & {});

/** (3, 'containers') -> "3 containers"; (1, 'files') -> "1 file"; bytes in binary units. */
export function formatAmount(n: number, unit: Unit): string {
  if (unit === 'bytes') return formatBytes(n);
  const one = unit.endsWith('s') ? unit.slice(0, -1) : unit;
  return plural(n, one, unit);
}

/** Per second: "64.0 MiB/s", "3.5 containers/s", "120 files/s". */
export function formatRate(rate: number | null, unit: Unit): string {
  if (rate === null || !Number.isFinite(rate)) return '-';
  if (unit === 'bytes' || rate >= 10) return `${formatAmount(rate, unit)}/s`;
  return `${rate.toFixed(1)} ${unit}/s`;
}

export function formatPercent(done: number, total: number): string {
  if (total <= 0) return '?%';
  return `${Math.min(100, Math.floor((done * 100) / total))}%`;
}

/** "45%  1.00 GiB / 2.22 GiB", "50%  12 / 24 containers"; without a total, just what is done. */
export function formatProgress(done: number, total: number, unit: Unit): string {
  if (total <= 0) return formatAmount(done, unit);
  const amount = unit === 'bytes' ? `${formatBytes(done)} / ${formatBytes(total)}` : `${formatCount(done)} / ${formatAmount(total, unit)}`;
  return `${formatPercent(done, total)}  ${amount}`;
}

/** "[#####.....]" */
export function progressBar(done: number, total: number, width: number): string {
  const filled = total > 0 ? Math.min(width, Math.floor((done * width) / total)) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** "2026-11-22T00:01:00.000Z" -> "2026-11-22 00:01:00 UTC". */
export function formatTime(iso: string | null | undefined): string {
  if (iso === null || iso === undefined) return '-';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

/** Left-aligned columns, two spaces apart; numbers are the caller's to format. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** Label/value pairs, labels padded to one width. */
export function formatPairs(pairs: Array<[string, string]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
