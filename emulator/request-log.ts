import { matchesApi } from "./api-pattern.ts";

/** One handled API request, as tests see it. Never carries a secret. */
export interface RequestLogEntry {
  /** Emulator clock time (epoch ms) when the request was handled. */
  at: number;
  /** `sts:AssumeRole`, `cr:GetAuthorizationToken`, `fc:InvokeFunction`, `registry:Auth`, ... */
  api: string;
  /** ARN of the authenticated caller, or `anonymous`. */
  principal: string;
  /** `ok` or the error code returned. */
  outcome: string;
  status: number;
  requestId: string;
  /** What the call was about when there is one thing: a role ARN, an instance id, a function, a scope. */
  resource?: string;
}

export type RequestLogFilter =
  { api?: string; principal?: string; outcome?: string; status?: number; resource?: string } | ((entry: RequestLogEntry) => boolean);

export interface RequestLog {
  readonly entries: readonly RequestLogEntry[];
  record(entry: RequestLogEntry): void;
  /** How many entries match; `api` in a filter object is an API pattern (`cr:` matches every CR call). */
  count(filter?: RequestLogFilter): number;
  filter(filter?: RequestLogFilter): RequestLogEntry[];
  clear(): void;
}

function matches(entry: RequestLogEntry, filter: RequestLogFilter | undefined): boolean {
  if (filter === undefined) return true;
  if (typeof filter === "function") return filter(entry);
  if (filter.api !== undefined && !matchesApi(filter.api, entry.api)) return false;
  if (filter.principal !== undefined && filter.principal !== entry.principal) return false;
  if (filter.outcome !== undefined && filter.outcome !== entry.outcome) return false;
  if (filter.status !== undefined && filter.status !== entry.status) return false;
  if (filter.resource !== undefined && filter.resource !== entry.resource) return false;
  return true;
}

/** An in-memory log, bounded so a long-running sandbox does not grow without limit. */
export function createRequestLog(options: { limit?: number } = {}): RequestLog {
  const limit = options.limit ?? 100_000;
  const entries: RequestLogEntry[] = [];
  return {
    entries,
    record(entry) {
      entries.push(entry);
      if (entries.length > limit) entries.splice(0, entries.length - limit);
    },
    count: (filter) => entries.filter((entry) => matches(entry, filter)).length,
    filter: (filter) => entries.filter((entry) => matches(entry, filter)),
    clear() {
      entries.length = 0;
    },
  };
}
