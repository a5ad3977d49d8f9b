/**
 * Warnings about the shared cache, at most one per reason per interval: while Redis is down every
 * request would otherwise log the same line. The next line says how many were left out.
 */
import type { Logger } from "../../../shared/log.ts";

/** `via`: the request's logger when a request is being served, so the line carries its id; the instance's otherwise. */
export type Warn = (reason: string, fields?: Record<string, unknown>, via?: Pick<Logger, "warn">) => void;

export function rateLimitedWarning(log: Pick<Logger, "warn">, intervalMs: number, now: () => number): Warn {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (reason, fields = {}, via = log) => {
    const seen = last.get(reason);
    if (seen && now() - seen.at < intervalMs) {
      seen.suppressed++;
      return;
    }
    last.set(reason, { at: now(), suppressed: 0 });
    via.warn(
      { sharedCache: reason, ...fields, ...(seen?.suppressed ? { suppressed: seen.suppressed } : {}) },
      "shared cache: serving from this instance's cache or upstream instead",
    );
  };
}
