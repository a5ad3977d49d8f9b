import middy from "@middy/core";
import { identityFromKeys, type Identity } from "../../shared/alibaba/identity.ts";
import { AcrCredentialError } from "../../shared/errors.ts";
import { monotonicNow } from "../../shared/retry.ts";
import { issueCredentials, renew, type CallerContext } from "./broker.ts";
import type { FcContext } from "./fc-event.ts";
import { issueKubeletCredentials } from "./kubelet-credentials.ts";
import { accessLog, bodyLimit, errorResponse, fcEvent, httpResponse, type BrokerEvent, type HttpResult } from "./middlewares.ts";
import type { BrokerRuntime } from "./runtime.ts";

/** The largest `POST /v1/credentials` body (SPEC §3.1). */
export const maxBodyBytes = 64 * 1024;

/** The broker's identity: the one it was given (CLI, sandbox), else FC's execution role credentials. */
function baseIdentity(runtime: BrokerRuntime, context: FcContext): Identity {
  if (runtime.baseIdentity) return runtime.baseIdentity;
  const c = context.credentials;
  if (c?.accessKeyId && c.accessKeySecret) {
    return identityFromKeys({ accessKeyId: c.accessKeyId, accessKeySecret: c.accessKeySecret, ...(c.securityToken ? { securityToken: c.securityToken } : {}) });
  }
  throw new AcrCredentialError("Internal", "the function has no credentials in its context; give it an execution role (see docs/deploy.md)");
}

function callerContext(runtime: BrokerRuntime, event: BrokerEvent, context: FcContext): CallerContext {
  const functionTimeoutMs = context.function?.timeout ? context.function.timeout * 1000 - 1000 : Number.POSITIVE_INFINITY;
  return {
    base: baseIdentity(runtime, context),
    deadline: monotonicNow() + Math.max(1000, Math.min(runtime.config.requestTimeoutSeconds * 1000, functionTimeoutMs)),
    annotate: (fields) => Object.assign(event.annotations, fields),
  };
}

const methodNotAllowed = (allow: string) => new AcrCredentialError("MethodNotAllowed", `use ${allow} for this path`, { details: { allow } });

/** Routes an invocation to the business functions; the result is turned into a response by the middlewares. */
async function route(runtime: BrokerRuntime, event: BrokerEvent, context: FcContext): Promise<HttpResult> {
  const invocation = event.invocation;
  if (invocation.kind === "renew") {
    return { status: 200, body: { clusters: await renew(runtime, invocation.cluster, callerContext(runtime, event, context)) } };
  }
  switch (invocation.path) {
    case "/healthz":
      if (invocation.method !== "GET" && invocation.method !== "HEAD") throw methodNotAllowed("GET");
      return { status: 200, body: { status: "ok", version: runtime.version } };
    case "/v1/credentials":
      if (invocation.method !== "POST") throw methodNotAllowed("POST");
      return { status: 200, body: await issueCredentials(runtime, { authorization: invocation.headers.authorization, body: invocation.body }, callerContext(runtime, event, context)) };
    case "/v1/kubelet-credentials":
      if (invocation.method !== "POST") throw methodNotAllowed("POST");
      return { status: 200, body: await issueKubeletCredentials(runtime, { authorization: invocation.headers.authorization, body: invocation.body }, callerContext(runtime, event, context)) };
    default:
      throw new AcrCredentialError("NotFound", `no such path '${invocation.path}'; the API is POST /v1/credentials and GET /healthz`);
  }
}

/**
 * The FC handler: `(event: Buffer, context) => response`. `runtime` is called per request but
 * builds once; if building fails (invalid configuration) every request answers with that error.
 */
export function createHandler(runtime: () => BrokerRuntime, log: () => BrokerRuntime["log"] = () => runtime().log) {
  return middy(async (event: BrokerEvent, context: FcContext) => route(runtime(), event, context))
    .use(httpResponse())
    .use(accessLog(log))
    .use(errorResponse(log))
    .use(fcEvent())
    .use(bodyLimit(maxBodyBytes));
}
