/**
 * The doctor's result: one line per check, ✓ or ✗ (or skipped, when an earlier failure leaves
 * nothing to check), and for each failure the one-line fix. Pure formatting and verdicts.
 */

export type CheckStatus = "ok" | "fail" | "skip";

export interface Check {
  id: string;
  title: string;
  status: CheckStatus;
  /** What was found, on one line; never a password or a token. */
  detail: string;
  /** What to change, for a failure. */
  fix?: string;
}

export const ok = (id: string, title: string, detail: string): Check => ({ id, title, status: "ok", detail });
export const fail = (id: string, title: string, detail: string, fix: string): Check => ({ id, title, status: "fail", detail, fix });
export const skip = (id: string, title: string, detail: string): Check => ({ id, title, status: "skip", detail });

const marks: Record<CheckStatus, string> = { ok: "✓", fail: "✗", skip: "-" };

export function formatChecklist(checks: readonly Check[]): string {
  const width = Math.max(...checks.map((check) => check.title.length));
  const lines: string[] = [];
  for (const check of checks) {
    lines.push(`${marks[check.status]} ${check.title.padEnd(width)}  ${check.status === "skip" ? `skipped: ${check.detail}` : check.detail}`);
    if (check.fix !== undefined) lines.push(`  ${" ".repeat(width)}  fix: ${check.fix}`);
  }
  const failed = checks.filter((check) => check.status !== "ok").length;
  lines.push("", failed === 0 ? "All checks passed." : `${failed} of ${checks.length} checks did not pass.`);
  return lines.join("\n");
}

/** 0 when every check passed, 1 otherwise (a skipped check means something before it failed). */
export function checklistExitCode(checks: readonly Check[]): number {
  return checks.every((check) => check.status === "ok") ? 0 : 1;
}

export function checklistJson(checks: readonly Check[]): string {
  return JSON.stringify({ ok: checklistExitCode(checks) === 0, checks }, null, 2);
}
