import middy from "@middy/core";
import { identityFromKeys, type Identity } from "../../shared/alibaba/identity.ts";
import { AcrCredentialError } from "../../shared/errors.ts";
import { callerContext, renew, type CallerContext } from "./broker.ts";
import type { FcContext } from "./fc-event.ts";
import { answerHttp, maxBodyBytes, requestDeadline, type HttpResult } from "./http-api.ts";
import { accessLog, bodyLimit, errorResponse, fcEvent, httpResponse, type BrokerEvent } from "./middlewares.ts";
import type { BrokerRuntime } from "./runtime.ts";

export { maxBodyBytes };

/** The broker's identity: the one it was given (CLI, sandbox), else FC's execution role credentials. */
function baseIdentity(runtime: BrokerRuntime, context: FcContext): Identity {
  if (runtime.baseIdentity) return runtime.baseIdentity;
  const c = context.credentials;
  if (c?.accessKeyId && c.accessKeySecret) {
    return identityFromKeys({ accessKeyId: c.accessKeyId, accessKeySecret: c.accessKeySecret, ...(c.securityToken ? { securityToken: c.securityToken } : {}) });
  }
  throw new AcrCredentialError("Internal", "the function has no credentials in its context; give it an execution role (see docs/deploy.md)");
}

function fcCallerContext(runtime: BrokerRuntime, event: BrokerEvent, context: FcContext, log: BrokerRuntime["log"]): CallerContext {
  return callerContext(log, event.requestId, {
    base: baseIdentity(runtime, context),
    deadline: requestDeadline(runtime, context.function?.timeout),
    annotate: (fields) => Object.assign(event.annotations, fields),
  });
}

/** Routes an invocation to the business functions; the result is turned into a response by the middlewares. */
async function route(runtime: BrokerRuntime, event: BrokerEvent, context: FcContext, log: BrokerRuntime["log"]): Promise<HttpResult> {
  const invocation = event.invocation;
  if (invocation.kind === "renew") {
    return { status: 200, body: { clusters: await renew(runtime, invocation.cluster, fcCallerContext(runtime, event, context, log)) } };
  }
  return answerHttp(runtime, { method: invocation.method, path: invocation.path, authorization: invocation.headers.authorization, body: invocation.body }, () =>
    fcCallerContext(runtime, event, context, log),
  );
}

/**
 * The FC handler: `(event: Buffer, context) => response`. `runtime` is called per request but
 * builds once; if building fails (invalid configuration) every request answers with that error.
 */
export function createHandler(runtime: () => BrokerRuntime, log: () => BrokerRuntime["log"] = () => runtime().log) {
  return middy(async (event: BrokerEvent, context: FcContext) => route(runtime(), event, context, log()))
    .use(httpResponse())
    .use(accessLog(log))
    .use(errorResponse(log))
    .use(fcEvent())
    .use(bodyLimit());
}
