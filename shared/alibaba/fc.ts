/**
 * Function Compute 3.0 InvokeFunction (API 2023-03-30) through `@alicloud/fc20230330`. FC 3.0
 * functions have no service: the 2.0 API (`/2016-08-15/services/<service>/functions/<fn>`) cannot
 * address them, so this is the only way to invoke what s.yaml deploys.
 */
import { Readable } from "node:stream";
import * as Fc3Package from "@alicloud/fc20230330";
import { AcrCredentialError, clipMessage, oneLine } from "../errors.ts";
import type { AccessKey } from "./identity.ts";
import { cjsDefault, runtimeOptions, sdkConfig } from "./sdk.ts";
import { redactTokens, type SdkError } from "./upstream-error.ts";

const Fc3 = cjsDefault<typeof Fc3Package.default.default>(Fc3Package.default);

export interface FunctionTarget {
  accountId: string;
  region: string;
  functionName: string;
  qualifier?: string;
  /** Full URL; default `https://<account>.<region>.fc.aliyuncs.com`. */
  endpoint?: string;
}

/** `endpoint` (host[:port]) and protocol for the SDK's Config, from a full URL or the account's default. */
export function fcEndpoint(target: Pick<FunctionTarget, "accountId" | "region" | "endpoint">): { endpoint: string; protocol: "https" | "http" } {
  if (target.endpoint === undefined) return { endpoint: `${target.accountId}.${target.region}.fc.aliyuncs.com`, protocol: "https" };
  let url: URL;
  try {
    url = new URL(target.endpoint);
  } catch {
    throw new AcrCredentialError(
      "UsageError",
      `--endpoint '${target.endpoint}' is not a URL; give one like https://${target.accountId}.${target.region}.fc.aliyuncs.com`,
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new AcrCredentialError("UsageError", `--endpoint '${target.endpoint}' must be an http or https URL`);
  return { endpoint: url.host, protocol: url.protocol === "https:" ? "https" : "http" };
}

async function readAll(body: Readable | undefined): Promise<string> {
  if (body === undefined) return "";
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  return Buffer.concat(chunks).toString("utf8");
}

function hintFor(code: unknown): string {
  if (code === "AccessDenied" || code === "Forbidden.NoPermission")
    return "; the caller needs fc:InvokeFunction on the function (docs/deploy.md gives the policy)";
  if (/NotFound/.test(String(code))) return "; check --function, --region and --account-id";
  return "";
}

/**
 * The SDK's own message glues the service's message to "request id: …" with no separator and a
 * resource ARN or URL at its end reads as one word with it; built from its fields instead.
 */
function describeSdkError(error: unknown, url: string): string {
  const e = (error ?? {}) as SdkError;
  // A network failure: the SDK appends "POST <url> failed." to Node's message without a space.
  if (typeof e.syscall === "string" || (typeof e.code === "string" && /^(E[A-Z]+|UND_ERR_\w+)$/.test(e.code)))
    return `cannot reach ${url} (${String(e.code)}); check --endpoint (or --region and --account-id) and the network`;
  const message = e.data?.Message ?? e.data?.message;
  if (typeof message !== "string") return clipMessage(redactTokens(oneLine(error).replace(/(\S)((?:GET|POST|PUT|DELETE) https?:\/\/)/, "$1; $2")));
  const status = typeof e.statusCode === "number" ? ` (HTTP ${e.statusCode})` : "";
  const requestId = typeof e.requestId === "string" && e.requestId !== "undefined" ? `; request id ${e.requestId}` : "";
  return `${String(e.code ?? "error")}${status}: ${clipMessage(redactTokens(message))}${requestId}`;
}

/** Synchronously invokes a function with a JSON event and returns its JSON result. */
export async function invokeFunction(target: FunctionTarget, keys: AccessKey, event: unknown, timeoutMs = 60_000): Promise<unknown> {
  const where = `${target.functionName} in ${target.region}`;
  const { endpoint, protocol } = fcEndpoint(target);
  const config = sdkConfig(endpoint, protocol, { kind: "keys", keys });
  config.regionId = target.region;
  const client = new Fc3(config);
  const request = new Fc3Package.InvokeFunctionRequest({
    body: Readable.from([Buffer.from(JSON.stringify(event))]),
    ...(target.qualifier ? { qualifier: target.qualifier } : {}),
  });
  let response: InstanceType<typeof Fc3Package.InvokeFunctionResponse>;
  try {
    response = await client.invokeFunctionWithOptions(target.functionName, request, new Fc3Package.InvokeFunctionHeaders({}), runtimeOptions({ timeoutMs }));
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new AcrCredentialError("UpstreamError", `InvokeFunction ${where} failed: ${describeSdkError(error, `${protocol}://${endpoint}`)}${hintFor(code)}`);
  }
  const text = await readAll(response.body);
  let result: unknown = text;
  if (text !== "") {
    try {
      result = JSON.parse(text);
    } catch {
      throw new AcrCredentialError("UpstreamError", `InvokeFunction ${where} answered something that is not JSON`);
    }
  }
  const errorType = response.headers?.["x-fc-error-type"];
  if (errorType) {
    const message = (result as { errorMessage?: unknown } | null)?.errorMessage;
    throw new AcrCredentialError("UpstreamError", `the function ${where} failed (${errorType}): ${clipMessage(String(message ?? "no message"))}`);
  }
  return result;
}
