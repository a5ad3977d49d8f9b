/**
 * `acr-credential doctor`: checks, in the order a refresher run needs them, everything between a
 * cluster and its registry credentials, as the refresher itself: in its pod, or through a kubeconfig
 * that may create the refresher's tokens (TokenRequest). Prints a checklist with a fix per failure.
 */
import { readFile } from "node:fs/promises";
import { AuthenticationV1Api, AuthorizationV1Api, CoreV1Api, VersionApi, WellKnownApi, type KubeConfig } from "@kubernetes/client-node";
import { brokerClient } from "../../job/broker-client.ts";
import { kubernetesCluster } from "../../job/cluster.ts";
import type { RefresherConfig } from "../../job/config.ts";
import { literalNames } from "../../job/config.ts";
import { registryLabel, registryRequest } from "../../job/registry.ts";
import { defaultConfigMap, parseConfigData, refresherServiceAccount } from "../../job/run.ts";
import { AcrCredentialError, codeOf, oneLine } from "../../shared/errors.ts";
import type { Command, Options } from "../args.ts";
import { parseFlags } from "../args.ts";
import { checklistJson, checklistExitCode, fail, formatChecklist, ok, skip, type Check } from "../doctor/checklist.ts";
import { missingPermissions, requiredPermissions, type ResourceRule } from "../doctor/rbac.ts";
import { assessIssuer, readClaims, refusalBlames } from "../doctor/token.ts";
import { inCluster, kubeConfigForToken, loadKubeConfig, requestToken } from "../kubeconfig.ts";
import { defaultStsTokenFile, defaultTokenFile, parseConfigMapRef } from "./refresh.ts";

const defaultServiceAccount = refresherServiceAccount;
const defaultAudience = "acr-credential-broker";
const rrsaAudience = "sts.aliyuncs.com";
/** job/build.mjs inlines job/deploy/base/rbac.yaml into the image's bundle; elsewhere it is read from the repository. */
declare const ACR_REFRESHER_RBAC_YAML: string | undefined;
const shippedRbac = async (): Promise<string> =>
  typeof ACR_REFRESHER_RBAC_YAML === "string" ? ACR_REFRESHER_RBAC_YAML : readFile(new URL("../../job/deploy/base/rbac.yaml", import.meta.url), "utf8");
/** Namespaces reviewed besides the ConfigMap's: enough to catch a per-namespace RoleBinding setup, few enough to stay quick. */
const maxReviewedNamespaces = 5;

const usage = `Usage: acr-credential doctor [--kubeconfig F] [--config-map NS/NAME] [--broker-url U] [--json] [options]

Checks what the refresher needs, as the refresher: in its pod (its own identity and projected token),
or through a kubeconfig allowed to create tokens for its ServiceAccount (TokenRequest; a cluster
admin is). Prints a checklist, with the fix for each failure; passwords and tokens are never printed.

  kubernetes    the API server answers
  identity      who the checks act as
  configmap     the configuration ConfigMap exists and is valid
  rbac          the refresher's RBAC (job/deploy/base/rbac.yaml), by SelfSubjectRulesReview in the
                ConfigMap's namespace and the namespaces it names
  token issuer  the broker token is this cluster's (iss), not expired, and the broker knows its issuer
  audience      the broker accepts the token's audience
  broker        broker-url answers GET /healthz (from where doctor runs)
  credentials   a real credential request for the configured registries

Options:
  --kubeconfig F          kubeconfig file (default: in-cluster config, else $KUBECONFIG or ~/.kube/config)
  --config-map NS/NAME    where the configuration lives (default: ${defaultConfigMap.namespace}/${defaultConfigMap.name})
  --broker-url U          overrides the ConfigMap's broker-url
  --service-account NS/NAME  the refresher's ServiceAccount (default: ${defaultServiceAccount.namespace}/${defaultServiceAccount.name})
  --audience A            audience of the broker token doctor creates (default: ${defaultAudience}, as job/deploy mounts it)
  --token-file F          use this broker token instead of creating one (in the pod: ${defaultTokenFile})
  --sts-token-file F      use this RRSA token instead of creating one (in the pod: ${defaultStsTokenFile})
  --json                  print the checklist as JSON

Exit codes: 0 every check passed, 1 something failed, 2 a usage error.`;

const titles = {
  kubernetes: "kubernetes",
  identity: "identity",
  configmap: "configmap",
  rbac: "rbac",
  issuer: "token issuer",
  audience: "audience",
  broker: "broker",
  credentials: "credentials",
} as const;
type CheckId = keyof typeof titles;

const passed = (id: CheckId, detail: string) => ok(id, titles[id], detail);
const failed = (id: CheckId, detail: string, fix: string) => fail(id, titles[id], detail, fix);
const skipped = (id: CheckId, detail: string) => skip(id, titles[id], detail);

/** A kubeconfig for the same API server that authenticates with `token` only. */
function withToken(kubeConfig: KubeConfig, token: string): KubeConfig {
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) throw new AcrCredentialError("Internal", "no current cluster");
  return kubeConfigForToken(cluster, token);
}

function kubeFailure(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const body = (error as { body?: unknown }).body;
  let reason: string;
  try {
    reason = typeof body === "string" ? ((JSON.parse(body) as { message?: string }).message ?? "") : "";
  } catch {
    reason = "";
  }
  return typeof code === "number" ? `HTTP ${code}${reason ? `: ${reason}` : ""}` : oneLine(error);
}

async function readTokenFile(path: string): Promise<string | undefined> {
  try {
    const text = (await readFile(path, "utf8")).trim();
    return text === "" ? undefined : text;
  } catch {
    return undefined;
  }
}

interface Identity {
  /** The config the checks use: the refresher's identity when it could be had. */
  kubeConfig: KubeConfig;
  asRefresher: boolean;
  /** Creates a token of the refresher's ServiceAccount for an audience; undefined in the pod. */
  mint?: (audience: string) => Promise<string>;
}

/** The flags, as parsed and as the README's command table lists them. */
const options = {
  kubeconfig: { type: "string" },
  "config-map": { type: "string" },
  "broker-url": { type: "string" },
  "service-account": { type: "string" },
  audience: { type: "string" },
  "token-file": { type: "string" },
  "sts-token-file": { type: "string" },
  json: { type: "boolean" },
} satisfies Options;

export const command: Command = {
  usage,
  options,
  async run(argv) {
    const { values } = parseFlags("doctor", argv, options);
    const configMapRef = parseConfigMapRef(values["config-map"], "doctor");
    const serviceAccount =
      values["service-account"] === undefined ? defaultServiceAccount : parseConfigMapRef(values["service-account"], "doctor", "--service-account");
    const audience = values.audience ?? defaultAudience;
    const kubeConfig = loadKubeConfig(values.kubeconfig);
    const podMode = values.kubeconfig === undefined && inCluster();
    const refresherUser = `system:serviceaccount:${serviceAccount.namespace}:${serviceAccount.name}`;

    const checks = new Map<CheckId, Check>();
    const finish = () => {
      const ordered = (Object.keys(titles) as CheckId[]).map((id) => checks.get(id) ?? skipped(id, "an earlier check failed"));
      console.log(values.json === true ? checklistJson(ordered) : formatChecklist(ordered));
      return checklistExitCode(ordered);
    };

    // The API server.
    try {
      const version = await kubeConfig.makeApiClient(VersionApi).getCode();
      checks.set("kubernetes", passed("kubernetes", `${version.gitVersion} at ${kubeConfig.getCurrentCluster()?.server}`));
    } catch (error) {
      checks.set(
        "kubernetes",
        failed(
          "kubernetes",
          `cannot reach ${kubeConfig.getCurrentCluster()?.server}: ${kubeFailure(error)}`,
          "check --kubeconfig (or the pod's network) and that the API server is up",
        ),
      );
      return finish();
    }

    // Who the checks act as.
    let identity: Identity = { kubeConfig, asRefresher: podMode };
    if (!podMode) {
      const core = kubeConfig.makeApiClient(CoreV1Api);
      const mint = async (tokenAudience: string | undefined) =>
        (await requestToken(core, serviceAccount, tokenAudience === undefined ? [] : [tokenAudience], 600)).token;
      try {
        identity = { kubeConfig: withToken(kubeConfig, await mint(undefined)), asRefresher: true, mint };
      } catch (error) {
        const status = (error as { code?: unknown }).code;
        const fix =
          status === 404
            ? `create the refresher's ServiceAccount: kubectl apply -k job/deploy/base (or pass --service-account)`
            : `run doctor with a kubeconfig allowed to create tokens for ${serviceAccount.namespace}/${serviceAccount.name} (a cluster admin), or in the refresher's pod`;
        checks.set(
          "identity",
          failed("identity", `cannot create a token for ServiceAccount ${serviceAccount.namespace}/${serviceAccount.name}: ${kubeFailure(error)}`, fix),
        );
      }
    }
    let actingAs: string | undefined;
    try {
      actingAs = (await identity.kubeConfig.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} })).status?.userInfo?.username;
    } catch {
      actingAs = undefined;
    }
    if (!checks.has("identity")) {
      const how = podMode ? "in-cluster" : "tokens from the TokenRequest API";
      if (actingAs !== undefined && actingAs !== refresherUser) {
        checks.set(
          "identity",
          failed(
            "identity",
            `acting as ${actingAs}, not as the refresher (${refresherUser})`,
            `run doctor in the refresher's pod, or pass --service-account NAMESPACE/NAME of the ServiceAccount it runs as`,
          ),
        );
      } else {
        checks.set("identity", passed("identity", `${actingAs ?? refresherUser} (${how})`));
      }
    }

    // The configuration, read as the refresher reads it.
    const cluster = kubernetesCluster(identity.kubeConfig);
    let config: RefresherConfig | undefined;
    try {
      const data = await cluster.readConfigMap(configMapRef.namespace, configMapRef.name);
      const parsed = parseConfigData(data, configMapRef, values["broker-url"]);
      config = parsed.config;
      const { warnings } = parsed;
      const registries = config.registries.map((registry) => registryLabel(registry)).join(", ");
      const warned = warnings.length === 0 ? "" : `; ${warnings.length} warning${warnings.length === 1 ? "" : "s"}: ${warnings[0]}`;
      checks.set(
        "configmap",
        passed("configmap", `${configMapRef.namespace}/${configMapRef.name}: registries ${registries}; broker-url ${config.brokerUrl}${warned}`),
      );
    } catch (error) {
      const code = codeOf(error);
      const message = oneLine(error);
      const fix = /does not exist/.test(message)
        ? `create it from the sample: kubectl apply -f job/deploy/examples/acr-configuration.yaml (then set broker-url and acr-registry-info, docs/install.md)`
        : code === "KubernetesError"
          ? "re-apply the refresher's RBAC: kubectl apply -k job/deploy/base"
          : "fix the keys the message names (docs/refresher.md lists them)";
      checks.set("configmap", failed("configmap", message, fix));
    }

    // The RBAC, by what the API server says the acting identity may do.
    if (identity.asRefresher) {
      const required = requiredPermissions(await shippedRbac());
      const served =
        config === undefined ? [] : (literalNames(config.watchNamespace) ?? []).filter((namespace) => !config.excludeNamespaces.includes(namespace));
      const namespaces = [...new Set([configMapRef.namespace, ...served])].slice(0, maxReviewedNamespaces + 1);
      const authorization = identity.kubeConfig.makeApiClient(AuthorizationV1Api);
      try {
        const reviews = new Map<string, ResourceRule[]>();
        let incomplete = false;
        for (const namespace of namespaces) {
          const review = await authorization.createSelfSubjectRulesReview({ body: { spec: { namespace } } });
          reviews.set(namespace, (review.status?.resourceRules ?? []) as ResourceRule[]);
          incomplete ||= review.status?.incomplete === true;
        }
        const missing = missingPermissions(required, reviews);
        if (missing.length === 0) {
          checks.set("rbac", passed("rbac", `all ${required.length} permissions of job/deploy/base/rbac.yaml in ${namespaces.join(", ")}`));
        } else {
          const caveat = incomplete ? " (the API server's answer is incomplete: an authorizer other than RBAC may allow more)" : "";
          checks.set(
            "rbac",
            failed(
              "rbac",
              `missing: ${missing.join("; ")}${caveat}`,
              "re-apply the refresher's RBAC: kubectl apply -k job/deploy/base (or upgrade the Helm release)",
            ),
          );
        }
      } catch (error) {
        checks.set("rbac", failed("rbac", `SelfSubjectRulesReview failed: ${kubeFailure(error)}`, "the API server must serve authorization.k8s.io/v1"));
      }
    } else {
      checks.set("rbac", skipped("rbac", "doctor does not act as the refresher"));
    }

    // The tokens the broker will see.
    const tokenFile = values["token-file"] ?? (podMode ? defaultTokenFile : undefined);
    const stsTokenFile = values["sts-token-file"] ?? (podMode ? defaultStsTokenFile : undefined);
    let brokerToken: string | undefined;
    let stsToken: string | undefined;
    let tokenSource: string;
    try {
      if (tokenFile !== undefined) {
        brokerToken = await readTokenFile(tokenFile);
        tokenSource = tokenFile;
        if (brokerToken === undefined) throw new Error(`cannot read a token from ${tokenFile}`);
      } else if (identity.mint !== undefined) {
        brokerToken = await identity.mint(audience);
        tokenSource = `a TokenRequest with audience ${audience}`;
      } else {
        throw new Error("no token: pass --token-file");
      }
      if (config?.rrsa === true) {
        if (stsTokenFile !== undefined) stsToken = await readTokenFile(stsTokenFile);
        else if (identity.mint !== undefined) stsToken = await identity.mint(rrsaAudience);
      }
    } catch (error) {
      checks.set(
        "issuer",
        failed(
          "issuer",
          oneLine(error),
          podMode ? "mount the projected token volume from job/deploy" : "pass --token-file, or a kubeconfig allowed to create the refresher's tokens",
        ),
      );
      return finish();
    }

    const claims = readClaims(brokerToken);
    let clusterIssuer: string | undefined;
    try {
      // Typed as a string, but the client parses the JSON document it is.
      const discovery: unknown = await identity.kubeConfig.makeApiClient(WellKnownApi).getServiceAccountIssuerOpenIDConfiguration();
      clusterIssuer = ((typeof discovery === "string" ? JSON.parse(discovery) : discovery) as { issuer?: string }).issuer;
    } catch {
      clusterIssuer = undefined;
    }
    const issuerCheck = assessIssuer(claims, clusterIssuer, tokenSource, Date.now());
    checks.set("issuer", issuerCheck);
    if (issuerCheck.status === "fail" || claims === undefined) return finish();

    // The broker.
    if (config === undefined && values["broker-url"] === undefined) {
      checks.set("broker", skipped("broker", "no broker-url: the ConfigMap did not load (or pass --broker-url)"));
      return finish();
    }
    const brokerUrl = (config?.brokerUrl ?? (values["broker-url"] as string)).replace(/\/+$/, "");
    const health = await brokerHealth(brokerUrl);
    checks.set("broker", health);
    if (health.status !== "ok") return finish();

    // A real request, as the refresher makes it, without force.
    if (config === undefined) {
      checks.set("credentials", skipped("credentials", "the ConfigMap did not load"));
      return finish();
    }
    const tokens: Record<string, string | undefined> = { broker: brokerToken, sts: stsToken };
    const client = brokerClient({
      url: brokerUrl,
      tokenFile: "broker",
      ...(config.rrsa ? { stsTokenFile: "sts" } : {}),
      readFile: async (name) => {
        const token = tokens[name];
        if (token === undefined) throw Object.assign(new Error("no token"), { code: "ENOENT" });
        return token;
      },
      attempts: 1,
      userAgent: "acr-credential-doctor",
    });
    const audienceText = claims.aud.join(", ") || "(none)";
    try {
      const response = await client.fetchCredentials({ registries: config.registries.map((registry) => registryRequest(registry, config.rrsa)) });
      checks.set("audience", passed("audience", `${audienceText}, accepted by the broker (cluster '${response.cluster}')`));
      const received = response.credentials.map((credential) => `${credential.instanceId ?? "personal"}@${credential.regionId} until ${credential.expiresAt}`);
      if (response.errors.length === 0 && response.credentials.length >= config.registries.length) {
        checks.set("credentials", passed("credentials", `${received.length} received: ${received.join(", ")}`));
      } else {
        const errors = response.errors.map((error) => `${error.instanceId ?? "personal"}@${error.regionId}: ${error.code}: ${error.message}`);
        checks.set(
          "credentials",
          failed(
            "credentials",
            `${received.length} of ${config.registries.length} received; ${errors.join("; ") || "the broker answered no credential for some registries"}`,
            "the broker's logs; docs/troubleshooting.md, 'What Alibaba Cloud refused'",
          ),
        );
      }
    } catch (error) {
      const code = codeOf(error);
      const message = oneLine(error);
      const blamed = refusalBlames(code, message);
      if (blamed === "audience") {
        checks.set(
          "audience",
          failed(
            "audience",
            `the broker refused the token's audience ${audienceText}`,
            `give the projected token the broker's \`audience\` setting (serviceAccountToken.audience in job/deploy; --audience here), or change the broker's`,
          ),
        );
      } else if (blamed === "issuer") {
        checks.set(
          "issuer",
          failed(
            "issuer",
            `the broker knows no cluster with issuer ${claims.iss}`,
            `set this cluster's \`issuer\` in the broker configuration to ${claims.iss}`,
          ),
        );
      } else if (code === "InvalidToken") {
        checks.set("audience", skipped("audience", "the broker refused the token before its audience"));
      } else {
        checks.set("audience", passed("audience", `${audienceText}, accepted by the broker`));
      }
      const fix =
        blamed === "subject"
          ? `add ${claims.sub} to the cluster's subjects in the broker configuration`
          : code === "Forbidden"
            ? "every acr-registry-info item must match one of the cluster's registries in the broker configuration"
            : `docs/troubleshooting.md, the row for ${code}`;
      checks.set("credentials", failed("credentials", `[${code}] ${message}`, fix));
    }
    return finish();
  },
};

async function brokerHealth(brokerUrl: string): Promise<Check> {
  const url = `${brokerUrl}/healthz`;
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(5_000), headers: { accept: "application/json" } });
    text = await response.text();
  } catch (error) {
    const reason = error instanceof Error ? ((error.cause as { code?: string } | undefined)?.code ?? error.name) : String(error);
    return failed(
      "broker",
      `cannot reach ${url} (${reason})`,
      "check broker-url, that the broker runs, and the network path (NetworkPolicy, proxy) from the cluster",
    );
  }
  let body: { status?: unknown; version?: unknown } | undefined;
  try {
    body = JSON.parse(text) as { status?: unknown; version?: unknown };
  } catch {
    body = undefined;
  }
  if (!response.ok || body?.status !== "ok") {
    return failed(
      "broker",
      `${url} answered ${response.status}, not as the broker does`,
      "broker-url must be the broker's base URL (the one that serves /v1/credentials)",
    );
  }
  return passed("broker", `${brokerUrl} answers (version ${String(body.version)})`);
}
