/**
 * Function Compute InvokeFunction, dispatched to handlers that tests (or the sandbox) register, called
 * like the Node.js runtime calls an event function:
 * - FC 3.0 (API 2023-03-30, `@alicloud/fc20230330`): `POST /2023-03-30/functions/<fn>/invocations[?qualifier=Q]`,
 *   signed ACS3-HMAC-SHA256; functions have no service, their RAM resource is `acs:fc:<region>:<account>:functions/<fn>`;
 * - FC 2.0 (API 2016-08-15, `@alicloud/fc2`): `POST /2016-08-15/services/<service>[.<qualifier>]/functions/<fn>/invocations`,
 *   signed `FC <key>:<signature>`; resource `acs:fc:<region>:<account>:services/<service>/functions/<fn>`.
 */
import { fcErrors } from "./api-error.ts";
import { isAllowed, type Principal } from "./ram/principal.ts";
import type { Sts } from "./sts.ts";

export interface FcContext {
  requestId: string;
  /** Temporary credentials of the function's execution role, when it was registered with one. */
  credentials: { accessKeyId: string; accessKeySecret: string; securityToken: string } | undefined;
  function: { name: string; handler: string; memory: number; timeout: number };
  service: { name: string; qualifier: string; versionId: string; logProject: string; logStore: string };
  region: string;
  accountId: string;
  logger: {
    debug(...args: unknown[]): void;
    info(...args: unknown[]): void;
    warn(...args: unknown[]): void;
    error(...args: unknown[]): void;
    log(...args: unknown[]): void;
  };
}

export type FunctionHandler = (event: Buffer, context: FcContext) => Promise<unknown>;

export interface RegisterOptions {
  /** ARN of an execution role whose trust policy admits the `fc.aliyuncs.com` service; its credentials go in `context.credentials`. */
  role?: string;
  /** The function's region, used in its RAM resource; default cn-hangzhou. */
  region?: string;
}

export interface FunctionRegistry {
  /** Registers (or replaces) an FC 2.0 handler under a service; returns a function that unregisters it. */
  register(service: string, functionName: string, handler: FunctionHandler, options?: RegisterOptions): () => void;
  /** Registers (or replaces) an FC 3.0 function of `account` (no service); returns a function that unregisters it. */
  registerFunction(account: string, functionName: string, handler: FunctionHandler, options?: RegisterOptions): () => void;
}

export interface Invocation {
  account: string;
  /** Absent for an FC 3.0 function. */
  service?: string;
  qualifier: string;
  functionName: string;
  async: boolean;
  event: Buffer;
  requestId: string;
}

export interface InvocationResult {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

const invocationPath = /^\/2016-08-15\/services\/([^/.]+)(?:\.([^/]+))?\/functions\/([^/]+)\/invocations$/;

export function parseInvocationPath(path: string): { service: string; qualifier: string; functionName: string } | undefined {
  const match = invocationPath.exec(path);
  if (match === null) return undefined;
  const decode = (text: string) => decodeURIComponent(text);
  return { service: decode(match[1] as string), qualifier: match[2] === undefined ? "LATEST" : decode(match[2]), functionName: decode(match[3] as string) };
}

const fc3InvocationPath = /^\/2023-03-30\/functions\/([^/]+)\/invocations$/;

/** The function name of an FC 3.0 InvokeFunction path; the qualifier comes in the query. */
export function parseFc3InvocationPath(path: string): { functionName: string } | undefined {
  const match = fc3InvocationPath.exec(path);
  if (match === null) return undefined;
  try {
    return { functionName: decodeURIComponent(match[1] as string) };
  } catch {
    return undefined;
  }
}

function serialise(result: unknown): Buffer {
  if (Buffer.isBuffer(result)) return result;
  if (typeof result === "string") return Buffer.from(result, "utf8");
  if (result === undefined || result === null) return Buffer.alloc(0);
  return Buffer.from(JSON.stringify(result), "utf8");
}

const silentLogger = { debug() {}, info() {}, warn() {}, error() {}, log() {} };

export function createFunctions(deps: { sts: Sts }) {
  const registered = new Map<string, { handler: FunctionHandler; options: RegisterOptions }>();
  const key = (service: string, fn: string) => `${service}/${fn}`;
  // FC 3.0 functions, by account and name.
  const functions = new Map<string, { handler: FunctionHandler; options: RegisterOptions }>();
  const fc3Key = (account: string, fn: string) => `${account}:${fn}`;

  const registry: FunctionRegistry = {
    register(service, functionName, handler, options = {}) {
      const entry = { handler, options };
      registered.set(key(service, functionName), entry);
      return () => {
        if (registered.get(key(service, functionName)) === entry) registered.delete(key(service, functionName));
      };
    },
    registerFunction(account, functionName, handler, options = {}) {
      const entry = { handler, options };
      functions.set(fc3Key(account, functionName), entry);
      return () => {
        if (functions.get(fc3Key(account, functionName)) === entry) functions.delete(fc3Key(account, functionName));
      };
    },
  };

  /** The registered function and its RAM resource, or the API's not-found error. */
  function lookup(invocation: Invocation): { entry: { handler: FunctionHandler; options: RegisterOptions }; resource: (region: string) => string } {
    const service = invocation.service;
    if (service === undefined) {
      const entry = functions.get(fc3Key(invocation.account, invocation.functionName));
      if (entry === undefined) throw fcErrors.fc3FunctionNotFound(invocation.functionName);
      return { entry, resource: (region) => `acs:fc:${region}:${invocation.account}:functions/${invocation.functionName}` };
    }
    const entry = registered.get(key(service, invocation.functionName));
    if (entry === undefined) {
      const serviceKnown = [...registered.keys()].some((name) => name.startsWith(`${service}/`));
      throw serviceKnown ? fcErrors.functionNotFound(service, invocation.functionName) : fcErrors.serviceNotFound(service);
    }
    return { entry, resource: (region) => `acs:fc:${region}:${invocation.account}:services/${service}/functions/${invocation.functionName}` };
  }

  async function invoke(caller: Principal, invocation: Invocation): Promise<InvocationResult> {
    if (invocation.account !== caller.account)
      throw fcErrors.accessDenied(`the caller of account ${caller.account} may not invoke functions of account ${invocation.account}`);
    const { entry, resource: resourceIn } = lookup(invocation);
    const region = entry.options.region ?? "cn-hangzhou";
    const resource = resourceIn(region);
    if (!isAllowed(caller, "fc:InvokeFunction", resource)) throw fcErrors.accessDenied(`fc:InvokeFunction is not allowed on ${resource}`);
    const session =
      entry.options.role === undefined
        ? undefined
        : deps.sts.assumeRoleForService(entry.options.role, "fc.aliyuncs.com", `fc-${invocation.requestId.slice(0, 20)}`);
    const context: FcContext = {
      requestId: invocation.requestId,
      credentials:
        session === undefined
          ? undefined
          : { accessKeyId: session.accessKeyId, accessKeySecret: session.accessKeySecret, securityToken: session.securityToken },
      function: { name: invocation.functionName, handler: "index.handler", memory: 512, timeout: 30 },
      service: { name: invocation.service ?? "", qualifier: invocation.qualifier, versionId: "", logProject: "", logStore: "" },
      region,
      accountId: invocation.account,
      logger: silentLogger,
    };
    const headers = { "x-fc-request-id": invocation.requestId, "content-type": "application/octet-stream" };
    if (invocation.async) {
      // Like FC's async invocations: accepted now, run later, failures only visible to the function.
      setImmediate(() => void entry.handler(invocation.event, context).catch(() => undefined));
      return { status: 202, headers, body: Buffer.alloc(0) };
    }
    try {
      return { status: 200, headers, body: serialise(await entry.handler(invocation.event, context)) };
    } catch (error) {
      // FC reports a function's own failure as a 200 with x-fc-error-type, not as an API error.
      const failure = error instanceof Error ? error : new Error(String(error));
      const body = { errorMessage: failure.message, errorType: failure.name, stackTrace: [] as string[] };
      return {
        status: 200,
        headers: { ...headers, "content-type": "application/json", "x-fc-error-type": "UnhandledInvocationError" },
        body: Buffer.from(JSON.stringify(body)),
      };
    }
  }

  return { registry, invoke };
}
