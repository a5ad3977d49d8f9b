/**
 * Go's `time.ParseDuration` syntax, which the add-on's `expiring-threshold` uses: a sequence of
 * decimal numbers with units, e.g. `15m`, `1h30m`, `1.5h`, `90s`, `500ms`. Unitless values other
 * than `0` are rejected, as in Go.
 */

const unitMilliseconds: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Milliseconds of a Go duration string, or `undefined` when it is not one. */
export function parseGoDuration(text: string): number | undefined {
  let rest = text.trim();
  let sign = 1;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    sign = rest.startsWith("-") ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") return undefined;
  let total = 0;
  part.lastIndex = 0;
  while (part.lastIndex < rest.length) {
    const match = part.exec(rest);
    if (match === null) return undefined;
    const [, amount, unit] = match as unknown as [string, string, string];
    total += Number(amount) * (unitMilliseconds[unit] as number);
  }
  return sign * total;
}

/** A duration as Go prints it (`15m0s` style is noisy; this gives `15m`, `1h30m`, `45s`). */
export function formatDuration(milliseconds: number): string {
  if (milliseconds === 0) return "0s";
  let seconds = Math.round(milliseconds / 1000);
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  return `${hours > 0 ? `${hours}h` : ""}${minutes > 0 ? `${minutes}m` : ""}${seconds > 0 ? `${seconds}s` : ""}` || "0s";
}
