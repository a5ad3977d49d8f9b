import FCPackage from "@alicloud/fc2";
import { AcrCredentialError, oneLine } from "../errors.ts";
import type { AccessKey } from "./identity.ts";
import { cjsDefault } from "./sdk.ts";

/** Function Compute InvokeFunction through `@alicloud/fc2` (FC 2.0 API, which also reaches FC 3.0 functions). */

export interface FunctionTarget {
  accountId: string;
  region: string;
  service: string;
  functionName: string;
  qualifier?: string;
  /** Full URL; default `https://<account>.<region>.fc.aliyuncs.com`. */
  endpoint?: string;
}

type FcClient = { invokeFunction(service: string, fn: string, event: string, headers?: Record<string, string>, qualifier?: string): Promise<{ headers: Record<string, string>; data: unknown }> };

/** Synchronously invokes a function with a JSON event and returns its JSON result. */
export async function invokeFunction(target: FunctionTarget, keys: AccessKey, event: unknown, timeoutMs = 60_000): Promise<unknown> {
  const FC = cjsDefault<new (accountId: string, config: Record<string, unknown>) => FcClient>(FCPackage);
  const where = `${target.service}/${target.functionName} in ${target.region}`;
  const client = new FC(target.accountId, {
    accessKeyID: keys.accessKeyId,
    accessKeySecret: keys.accessKeySecret,
    ...(keys.securityToken ? { securityToken: keys.securityToken } : {}),
    region: target.region,
    secure: true,
    timeout: timeoutMs,
    ...(target.endpoint ? { endpoint: target.endpoint } : {}),
  });
  let response: { headers: Record<string, string>; data: unknown };
  try {
    response = await client.invokeFunction(target.service, target.functionName, JSON.stringify(event), {}, target.qualifier);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const hint = code === "AccessDenied" ? "; the caller needs fc:InvokeFunction on the function" : /NotFound/.test(String(code)) ? "; check --function SERVICE/FUNCTION, --region and --account-id" : "";
    throw new AcrCredentialError("UpstreamError", `InvokeFunction ${where} failed: ${oneLine(error).slice(0, 300)}${hint}`);
  }
  const body = Buffer.isBuffer(response.data) ? response.data.toString("utf8") : response.data;
  let result: unknown = body;
  if (typeof body === "string") {
    try {
      result = JSON.parse(body);
    } catch {
      throw new AcrCredentialError("UpstreamError", `InvokeFunction ${where} answered something that is not JSON`);
    }
  }
  const errorType = response.headers["x-fc-error-type"];
  if (errorType) {
    const message = (result as { errorMessage?: unknown } | null)?.errorMessage;
    throw new AcrCredentialError("UpstreamError", `the function ${where} failed (${errorType}): ${oneLine(String(message ?? "no message")).slice(0, 300)}`);
  }
  return result;
}
