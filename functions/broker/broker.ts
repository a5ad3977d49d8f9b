/**
 * The broker's business rules as plain functions: who is asking (token), what they may have
 * (authorization), and getting it (identity chain + cache). HTTP and FC concerns live elsewhere.
 */
import type { z } from "zod";
import type { Identity } from "../../shared/alibaba/identity.ts";
import {
  credentialsRequestSchema,
  type Credential,
  type CredentialsRequest,
  type CredentialsResponse,
  type EntryError,
  type RenewSummary,
} from "../../shared/broker-api.ts";
import { AcrCredentialError, codeOf, errorCodes, isAcrCredentialError, isErrorCode, oneLine, refusal } from "../../shared/errors.ts";
import { authorize, usesRrsa, type AuthorizedEntry } from "./authorize.ts";
import { issue, type IssueContext } from "./issue.ts";
import type { BrokerRuntime } from "./runtime.ts";
import { assertSubjectAllowed, verifyRrsaToken } from "./token.ts";
import { describeIssues } from "../../shared/schema-problems.ts";
import type { Logger } from "../../shared/log.ts";

/** Fields the request log line carries; never a token or a password. */
export interface RequestAnnotations {
  cluster?: string;
  subject?: string;
  instances?: string[];
  stale?: number;
  failed?: number;
}

export interface CallerContext {
  base: Identity;
  baseExpiresAt?: number;
  /** Monotonic ms by which upstream work must be done. */
  deadline: number;
  annotate: (fields: RequestAnnotations) => void;
  /** This request's logger (`requestId` bound); the business functions bind `cluster` once they know it. */
  log: Logger;
}

/**
 * A request's context. Its logger (`requestId` bound) is made on first use: an answer given from
 * memory, the warmest path, never logs.
 */
export function callerContext(log: Logger, requestId: string, fields: Omit<CallerContext, "log">): CallerContext {
  let child: Logger | undefined;
  return {
    ...fields,
    get log() {
      return (child ??= log.child({ requestId }));
    },
  };
}

/** What `issue` runs with for one cluster: the caller's identity and deadline, the logger bound to the cluster. */
export function issueContext(caller: CallerContext, cluster: string): IssueContext & { log: Logger } {
  return {
    base: caller.base,
    ...(caller.baseExpiresAt !== undefined ? { baseExpiresAt: caller.baseExpiresAt } : {}),
    deadline: caller.deadline,
    log: caller.log.child({ cluster }),
  };
}

/** `Bearer <token>` with nothing else: what every refresher sends, read without the pattern. */
const plainBearer = /^Bearer [^\s]+$/;

export function bearerToken(authorization: string | undefined): string {
  if (authorization !== undefined && plainBearer.test(authorization)) return authorization.slice(7);
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(authorization ?? "");
  if (!match) throw refusal("bearer-token-missing", "missing 'Authorization: Bearer <ServiceAccount token>' header");
  return match[1]!;
}

/** A JSON request body checked against its schema; `shape` tells a sender what to send instead. */
export function parseJsonBody<T>(body: Buffer, schema: z.ZodType<T>, shape: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString("utf8"));
  } catch {
    throw new AcrCredentialError("InvalidRequest", `the body is not JSON; send ${shape}`);
  }
  const result = schema.safeParse(raw);
  if (!result.success) throw new AcrCredentialError("InvalidRequest", `body ${describeIssues(result.error)}`);
  return result.data;
}

export function parseCredentialsRequest(body: Buffer): CredentialsRequest {
  if (body.length === 0) return {};
  return parseJsonBody(body, credentialsRequestSchema, '{"registries": [...]} or an empty body');
}

const rfc3339 = (ms: number) => `${new Date(ms).toISOString().slice(0, 19)}Z`;
const label = (entry: { instanceId?: string; regionId: string }) => `${entry.instanceId ?? "personal"}@${entry.regionId}`;

function entryError(entry: AuthorizedEntry, error: unknown): EntryError {
  const code = codeOf(error);
  const message = isAcrCredentialError(error) ? oneLine(error) : "unexpected error; see the broker's log";
  return { ...(entry.instanceId ? { instanceId: entry.instanceId } : {}), regionId: entry.regionId, code, message };
}

type Outcome = { ok: true; credential: Credential; renewed: boolean } | { ok: false; error: EntryError; cause: unknown };

async function obtainAll(runtime: BrokerRuntime, entries: AuthorizedEntry[], context: IssueContext & { log: Logger }): Promise<Outcome[]> {
  return Promise.all(
    entries.map(async (entry): Promise<Outcome> => {
      try {
        const { credential, domains, stale, renewed } = await issue(runtime.issue, entry.chain, entry.target, context);
        return {
          ok: true,
          renewed,
          credential: {
            ...(entry.instanceId ? { instanceId: entry.instanceId } : {}),
            regionId: entry.regionId,
            edition: entry.target.edition,
            domains,
            username: credential.username,
            password: credential.password,
            expiresAt: rfc3339(credential.expiresAt),
            ...(stale ? { stale: true } : {}),
          },
        };
      } catch (error) {
        if (!isAcrCredentialError(error)) context.log.error({ err: error, entry: label(entry) }, "unexpected error while issuing a credential");
        return { ok: false, error: entryError(entry, error), cause: error };
      }
    }),
  );
}

/** When every entry failed, the request fails with the most telling upstream error (timeout > unavailable > others). */
function overallFailure(outcomes: Array<Extract<Outcome, { ok: false }>>): AcrCredentialError {
  const rank = (code: string) => ["UpstreamTimeout", "UpstreamUnavailable", "UpstreamThrottled"].indexOf(code);
  const worst = [...outcomes].sort((a, b) => rank(b.error.code) - rank(a.error.code))[0]!;
  const code = isErrorCode(worst.error.code) ? worst.error.code : "UpstreamError";
  const status = errorCodes[code].status;
  const more = outcomes.length > 1 ? ` (all ${outcomes.length} registries failed)` : "";
  return new AcrCredentialError(status >= 500 ? code : "UpstreamError", `${worst.error.message}${more}`, { cause: worst.cause });
}

/** `POST /v1/credentials` (docs/broker.md, "HTTP API"). */
export async function issueCredentials(
  runtime: BrokerRuntime,
  input: { authorization: string | undefined; body: Buffer },
  caller: CallerContext,
): Promise<CredentialsResponse> {
  // The caller is the upstream context (identity, deadline, logger); its logger is made only if used.
  const verified = await runtime.verifyToken(bearerToken(input.authorization), { upstream: caller });
  const generation = runtime.answers.generation;
  const recalled = runtime.answers.recall(verified, input.body, runtime.clock.now());
  if (recalled) {
    caller.annotate(recalled.annotations);
    return recalled.response;
  }
  const annotations: RequestAnnotations = { cluster: verified.cluster.name, subject: verified.subject };
  const annotate = (fields: RequestAnnotations) => caller.annotate(Object.assign(annotations, fields));
  annotate({});
  assertSubjectAllowed(verified);

  const request = parseCredentialsRequest(input.body);
  const entries = authorize(verified.cluster, request, verified.subject);
  annotate({ instances: entries.map(label) });
  if (usesRrsa(entries)) await verifyRrsaToken(runtime.verifyToken, request.oidcToken!, verified);
  if (request.force) {
    runtime.forceLimiter.take(verified.cluster.name);
    runtime.answers.forget();
  }

  const outcomes = await obtainAll(runtime, entries, {
    ...issueContext(caller, verified.cluster.name),
    ...(request.oidcToken ? { oidcToken: request.oidcToken } : {}),
    force: request.force ?? false,
    ...(request.minValiditySeconds === undefined ? {} : { minValidityMs: request.minValiditySeconds * 1000 }),
  });
  if (request.force) runtime.answers.forget();
  const credentials = outcomes.flatMap((o) => (o.ok ? [o.credential] : []));
  const failures = outcomes.filter((o): o is Extract<Outcome, { ok: false }> => !o.ok);
  annotate({ stale: credentials.filter((c) => c.stale).length, failed: failures.length });
  if (entries.length > 0 && credentials.length === 0) throw overallFailure(failures);
  const response = { cluster: verified.cluster.name, subject: verified.subject, credentials, errors: failures.map((f) => f.error) };
  // An RRSA token has a validity of its own, and a forced answer must not be repeated unforced. An
  // answer to `minValiditySeconds` is repeated only while it still has that much left.
  const refreshBeforeMs = Math.max(runtime.config.refreshBeforeExpirySeconds, request.minValiditySeconds ?? 0) * 1000;
  // A credential renewed for minValiditySeconds replaces one that remembered answers still hold:
  // they must not be given again (the full path now gives the new one).
  if (request.minValiditySeconds !== undefined && outcomes.some((o) => o.ok && o.renewed)) runtime.answers.forget();
  else if (!request.oidcToken && !request.force)
    runtime.answers.remember(verified, input.body, response, annotations, { generation, refreshBeforeMs, now: runtime.clock.now() });
  return response;
}

/** The `{"action":"renew"}` event: refreshes a cluster's configured registries (all clusters without a name). */
export async function renew(runtime: BrokerRuntime, clusterName: string | undefined, caller: CallerContext): Promise<RenewSummary[]> {
  const clusters = clusterName === undefined ? runtime.config.clusters : runtime.config.clusters.filter((c) => c.name === clusterName);
  if (clusters.length === 0) throw new AcrCredentialError("NotFound", `no cluster named '${clusterName}' in the broker configuration`);
  caller.annotate({ cluster: clusterName ?? "*" });
  runtime.answers.forget();
  const summaries = await Promise.all(
    clusters.map(async (cluster): Promise<RenewSummary> => {
      const entries = authorize(cluster, {}, "");
      const outcomes = await obtainAll(runtime, entries, { ...issueContext(caller, cluster.name), force: true });
      const renewed: RenewSummary["renewed"] = [];
      const errors: EntryError[] = [];
      for (const o of outcomes) {
        if (!o.ok) errors.push(o.error);
        else {
          const where = { ...(o.credential.instanceId ? { instanceId: o.credential.instanceId } : {}), regionId: o.credential.regionId };
          // A stale answer means the refresh itself failed: report it, not the old expiry as news.
          if (o.credential.stale)
            errors.push({
              ...where,
              code: "UpstreamUnavailable",
              message: `the refresh failed; the cached credential stays valid until ${o.credential.expiresAt}`,
            });
          else renewed.push({ ...where, expiresAt: o.credential.expiresAt });
        }
      }
      return { cluster: cluster.name, renewed, errors };
    }),
  );
  runtime.answers.forget();
  return summaries;
}
