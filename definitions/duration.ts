// Duration text ("500ms", "30s", "5m", "1h", "1d", "7d") to exact milliseconds: no calendars, no DST.

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type DurationUnit = keyof typeof UNIT_MS;

/** Duration text as the editor checks it; the compiler checks it again at run time. */
export type Duration = `${number}${DurationUnit}`;

const DURATION_RE = /^([1-9][0-9]*)(ms|s|m|h|d)$/;

/** Milliseconds of a duration text, or null when the text is not a duration. */
export function parseDurationMs(text: string): number | null {
  const match = DURATION_RE.exec(text);
  if (!match) return null;
  const ms = Number(match[1]) * UNIT_MS[match[2] as DurationUnit];
  return Number.isSafeInteger(ms) ? ms : null;
}

/** The shortest duration text for a millisecond count ("3600000" -> "1h"). */
export function formatDurationMs(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0 && ms >= UNIT_MS[unit]) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
