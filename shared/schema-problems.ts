/**
 * How a failed validation is told to a user, everywhere the product validates input with zod (the
 * broker's configuration and requests, the emulator's world and faults): the field's path as it is
 * written in YAML or JSON (`clusters[0].issuer`), then what is expected.
 */
import type { z } from "zod";

/** `clusters[0].issuer`; `(top level)` for the document itself. */
export function fieldPath(path: readonly PropertyKey[]): string {
  const text = path.reduce<string>(
    (written, key) => (typeof key === "number" ? `${written}[${key}]` : written === "" ? String(key) : `${written}.${String(key)}`),
    "",
  );
  return text === "" ? "(top level)" : text;
}

/** The first `max` problems as `path: message`, joined by "; ", and how many more there are. */
export function describeIssues(error: z.ZodError, max = 1): string {
  const shown = error.issues.slice(0, max).map((issue) => `${fieldPath(issue.path)}: ${issue.message}`);
  const more = error.issues.length > max ? ` (and ${error.issues.length - max} more)` : "";
  return `${shown.join("; ") || "invalid"}${more}`;
}
