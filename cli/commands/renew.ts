import { renewResponseSchema } from "../../shared/broker-api.ts";
import { invokeFunction } from "../../shared/alibaba/fc.ts";
import { AcrCredentialError, clipMessage, isErrorCode } from "../../shared/errors.ts";
import type { Command, Options } from "../args.ts";
import { parseFlags } from "../args.ts";
import { defaultChainIdentity } from "./broker.ts";

const usage = `Usage: acr-credential renew --function NAME [--qualifier Q] [--cluster NAME] [--region R] [--account-id ID] [--endpoint URL]

Asks the deployed broker to refresh its cached registry credentials now, through Function Compute 3.0's
InvokeFunction API (2023-03-30) with your own Alibaba Cloud credentials (the default credential chain).
Prints what was renewed and until when; passwords are never printed. The caller needs fc:InvokeFunction
on acs:fc:<region>:<account-id>:functions/<NAME> (docs/deploy.md).

  --function NAME    the broker function as s.yaml deploys it, e.g. acr-credential-broker
  --qualifier Q      a version or alias of the function; default LATEST
  --cluster NAME     one cluster of the broker's configuration; default every cluster
  --region R         default ALIBABA_CLOUD_REGION_ID or cn-hangzhou
  --account-id ID    the function's account; default ALIBABA_CLOUD_ACCOUNT_ID
  --endpoint URL     Function Compute endpoint; default https://<account-id>.<region>.fc.aliyuncs.com

The renew event refreshes the caches of the one instance that answers it; see docs/deploy.md.
Exit code 0 when every registry was renewed, 1 when some failed.`;

/** The flags, as parsed and as the README's command table lists them. */
const options = {
  function: { type: "string" },
  qualifier: { type: "string" },
  cluster: { type: "string" },
  region: { type: "string" },
  "account-id": { type: "string" },
  endpoint: { type: "string" },
} satisfies Options;

export const command: Command = {
  usage,
  options,
  async run(argv) {
    const { values } = parseFlags("renew", argv, options);
    const functionName = values.function ?? "";
    if (functionName.includes("/")) {
      throw new AcrCredentialError(
        "UsageError",
        `--function takes the function's name only ('${functionName.split("/").pop()}'): Function Compute 3.0 functions, which s.yaml deploys, have no service`,
      );
    }
    if (!/^[A-Za-z_][\w-]{0,127}$/.test(functionName))
      throw new AcrCredentialError("UsageError", "--function NAME is required, e.g. --function acr-credential-broker (the functionName in s.yaml)");
    const accountId = values["account-id"] ?? process.env.ALIBABA_CLOUD_ACCOUNT_ID;
    if (!accountId || !/^\d{6,20}$/.test(accountId))
      throw new AcrCredentialError("UsageError", "--account-id (or ALIBABA_CLOUD_ACCOUNT_ID) must be the function's numeric account id");
    const region = values.region ?? process.env.ALIBABA_CLOUD_REGION_ID ?? "cn-hangzhou";

    const identity = await defaultChainIdentity();
    if (identity.kind !== "provider") throw new AcrCredentialError("Internal", "unexpected identity");
    const model = await identity.provider.getCredential();
    const keys = {
      accessKeyId: model.accessKeyId ?? "",
      accessKeySecret: model.accessKeySecret ?? "",
      ...(model.securityToken ? { securityToken: model.securityToken } : {}),
    };

    const event = { action: "renew", ...(values.cluster ? { cluster: values.cluster } : {}) };
    const result = await invokeFunction(
      {
        accountId,
        region,
        functionName,
        ...(values.qualifier ? { qualifier: values.qualifier } : {}),
        ...(values.endpoint ? { endpoint: values.endpoint } : {}),
      },
      keys,
      event,
    );
    const failure = (result as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    if (failure) {
      // The broker's own code is the one printed (once); a code this version does not know is an upstream error.
      const code = isErrorCode(failure.code) ? failure.code : "UpstreamError";
      const hint = code === "NotFound" && values.cluster !== undefined ? "; check --cluster, or leave it out to renew every cluster" : "";
      throw new AcrCredentialError(code, `the broker refused: ${clipMessage(String(failure.message ?? "no message"))}${hint}`);
    }
    const parsed = renewResponseSchema.safeParse(result);
    if (!parsed.success)
      throw new AcrCredentialError("BrokerResponseInvalid", `the function's answer is not a renew summary; is ${values.function} the broker?`);

    let failed = 0;
    for (const summary of parsed.data.clusters) {
      for (const entry of summary.renewed)
        console.log(`${summary.cluster}\t${entry.instanceId ?? "personal"}\t${entry.regionId}\trenewed until ${entry.expiresAt}`);
      for (const error of summary.errors)
        console.log(`${summary.cluster}\t${error.instanceId ?? "personal"}\t${error.regionId}\tFAILED ${error.code}: ${error.message}`);
      failed += summary.errors.length;
    }
    return failed === 0 ? 0 : 1;
  },
};
