/**
 * The sandbox's demo clusters: a signing key (generated once, kept under the state directory,
 * never committed) and the issuer the broker and the emulator's OIDC provider trust.
 */
import { randomUUID } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from "jose";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";
import type { Command, Options } from "../args.ts";
import { parseFlags } from "../args.ts";

export const defaultStateDir = new URL("../../.local/", import.meta.url).pathname;
export const demoSubject = "system:serviceaccount:kube-system:aliyun-acr-credential-helper";
export const brokerAudience = "acr-credential-broker";
/** The issuer the demo world's RRSA provider and role trust (emulator/worlds/demo.yaml). */
export const demoIssuer = "https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/cdemo";

export interface DemoCluster {
  name: string;
  issuer: string;
  kid: string;
  alg: "ES256";
  privateJwk: JWK;
  publicJwk: JWK;
}

const keyFile = (stateDir: string, name: string) => join(stateDir, "clusters", name, "signing-key.json");

/** Reads a demo cluster's key, or creates it (0600) on first use. */
export async function ensureDemoCluster(stateDir: string, name = "demo"): Promise<DemoCluster> {
  try {
    return await readDemoCluster(stateDir, name);
  } catch (error) {
    if (!(error instanceof AcrCredentialError) || error.code !== "FileUnreadable") throw error;
  }
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const kid = randomUUID();
  const cluster: DemoCluster = {
    name,
    issuer: demoIssuer,
    kid,
    alg: "ES256",
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: "ES256" },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" },
  };
  const file = keyFile(stateDir, name);
  await mkdir(join(stateDir, "clusters", name), { recursive: true, mode: 0o700 });
  await writeFile(file, `${JSON.stringify(cluster, null, 2)}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return cluster;
}

export async function readDemoCluster(stateDir: string, name: string): Promise<DemoCluster> {
  const file = keyFile(stateDir, name);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : oneLine(error);
    throw new AcrCredentialError(
      "FileUnreadable",
      `no sandbox cluster '${name}' (${file}: ${reason}); start the sandbox first with 'npm start' (acr-credential local)`,
    );
  }
  try {
    return JSON.parse(text) as DemoCluster;
  } catch {
    throw new AcrCredentialError("FileUnreadable", `${file} is not JSON; delete it and restart the sandbox to create a new key`);
  }
}

/** A projected-ServiceAccount-like token of a demo cluster. */
export async function mintDemoToken(
  cluster: DemoCluster,
  options: { subject?: string; audience?: string; ttlSeconds?: number; now?: number } = {},
): Promise<string> {
  const now = Math.floor((options.now ?? Date.now()) / 1000);
  const subject = options.subject ?? demoSubject;
  const [, namespace = "default", serviceAccount = "default"] = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(subject) ?? [];
  const key = await importJWK(cluster.privateJwk, cluster.alg);
  return new SignJWT({ "kubernetes.io": { namespace, serviceaccount: { name: serviceAccount, uid: randomUUID() } } })
    .setProtectedHeader({ alg: cluster.alg, kid: cluster.kid, typ: "JWT" })
    .setIssuer(cluster.issuer)
    .setSubject(subject)
    .setAudience(options.audience ?? brokerAudience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + (options.ttlSeconds ?? 600))
    .sign(key);
}

const usage = `Usage: acr-credential token [--cluster demo] [--sub SUBJECT] [--aud AUDIENCE] [--ttl 600] [--state-dir .local]

Prints a ServiceAccount-like JWT of a sandbox cluster (signed with its key under .local/), for
trying the broker by hand. Sandbox only: real clusters' tokens come from Kubernetes.

  --cluster NAME   the sandbox cluster; default demo
  --sub SUBJECT    default ${demoSubject}
  --aud AUDIENCE   default ${brokerAudience} (use sts.aliyuncs.com for an RRSA oidcToken)
  --ttl SECONDS    lifetime; default 600
  --state-dir DIR  where the sandbox keeps the cluster's key; default .local in the repository (as local's)`;

/** The flags, as parsed and as the README's command table lists them. */
const options = {
  cluster: { type: "string" },
  sub: { type: "string" },
  aud: { type: "string" },
  ttl: { type: "string" },
  "state-dir": { type: "string" },
} satisfies Options;

export const command: Command = {
  usage,
  options,
  async run(argv) {
    const { values } = parseFlags("token", argv, options);
    const ttl = values.ttl === undefined ? 600 : Number(values.ttl);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86400)
      throw new AcrCredentialError("UsageError", `--ttl must be a whole number of seconds from 1 to 86400, got '${values.ttl}'`);
    const cluster = await readDemoCluster(resolve(values["state-dir"] ?? defaultStateDir), values.cluster ?? "demo");
    console.log(
      await mintDemoToken(cluster, { ttlSeconds: ttl, ...(values.sub ? { subject: values.sub } : {}), ...(values.aud ? { audience: values.aud } : {}) }),
    );
    return 0;
  },
};
