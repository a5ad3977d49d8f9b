/**
 * An error the emulated cloud returns to a client: an HTTP status and a stable code, rendered in
 * the shape of the API that failed (OpenAPI JSON for STS and CR, FC's JSON for Function Compute).
 */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

/** OpenAPI (STS, CR) errors with the codes and statuses the platform documents. */
export const openApiErrors = {
  incompleteSignature: (detail: string) => new ApiError(400, "IncompleteSignature", `The request signature does not conform to Aliyun standards: ${detail}`),
  signatureDoesNotMatch: (detail: string) => new ApiError(400, "SignatureDoesNotMatch", `Specified signature is not matched with our calculation: ${detail}`),
  timestampExpired: (date: string) =>
    new ApiError(400, "InvalidTimeStamp.Expired", `Specified time stamp or date value is expired: ${date} is more than 15 minutes from the server time.`),
  timestampFormat: (date: string) => new ApiError(400, "InvalidTimeStamp.Format", `Specified time stamp or date value is not well formatted: '${date}'.`),
  nonceUsed: () => new ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already."),
  accessKeyNotFound: () => new ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."),
  missingSecurityToken: () => new ApiError(400, "MissingSecurityToken", "SecurityToken is mandatory for an STS access key."),
  securityTokenMismatch: () => new ApiError(400, "InvalidSecurityToken.MismatchWithAccessKey", "Specified SecurityToken mismatch with the AccessKey."),
  securityTokenExpired: () => new ApiError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."),
  actionNotFound: (action: string) => new ApiError(404, "InvalidAction.NotFound", `Specified api is not found, please check your url and method: ${action}`),
  missingParameter: (name: string) =>
    new ApiError(400, `Missing${name}`, `The input parameter ${name} that is mandatory for processing this request is not supplied.`),
  throttled: () => new ApiError(400, "Throttling.User", "Request was denied due to user flow control."),
  serverError: (status: 500 | 503, code: "InternalError" | "ServiceUnavailable") =>
    new ApiError(
      status,
      code,
      code === "InternalError"
        ? "The request processing has failed due to some unknown error."
        : "The request has failed due to a temporary failure of the server.",
    ),
};

/** Function Compute 2.0 errors (`{ErrorCode, ErrorMessage}` bodies). */
export const fcErrors = {
  signatureNotMatch: (detail: string) =>
    new ApiError(
      403,
      "SignatureNotMatch",
      `The request signature we calculated does not match the signature you provided. Check your access key and signing method (${detail})`,
    ),
  invalidAccessKeyId: (id: string) => new ApiError(403, "InvalidAccessKeyID", `invalid access key ID '${id}'`),
  missingHeader: (header: string) => new ApiError(400, "MissingRequiredHeader", `required HTTP header ${header} was not specified`),
  timeSkewed: (date: string) => new ApiError(403, "RequestTimeTooSkewed", `the date '${date}' is more than 15 minutes from the server time`),
  invalidArgument: (detail: string) => new ApiError(400, "InvalidArgument", detail),
  invalidSecurityToken: (detail: string) => new ApiError(403, "InvalidSecurityToken", detail),
  accessDenied: (detail: string) => new ApiError(403, "AccessDenied", detail),
  serviceNotFound: (service: string) => new ApiError(404, "ServiceNotFound", `service '${service}' does not exist`),
  functionNotFound: (service: string, fn: string) => new ApiError(404, "FunctionNotFound", `function '${fn}' does not exist in service '${service}'`),
  fc3FunctionNotFound: (fn: string) => new ApiError(404, "FunctionNotFound", `function not found: ${fn}`),
  pathNotSupported: (method: string, path: string) => new ApiError(400, "PathNotSupported", `'${method}' against '${path}' is not supported`),
};
