/**
 * `acr-credential local` (npm start) as a user runs it: a subprocess whose printed commands are
 * pasted into a shell as they are, and a real skopeo pull with the credentials it hands out.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CredentialsResponse } from "../../../shared/broker-api.ts";
import { shell, start, type Running } from "./support.ts";

let stateDir: string;
let sandbox: Running;
let printed: string;
let registry: string;
const passwords: string[] = [];

/** skopeo with its own HOME and an accept-anything policy, reading nothing of the machine's. */
async function skopeo(args: string[]) {
  const home = join(stateDir, "skopeo-home");
  await mkdir(home, { recursive: true });
  await writeFile(join(home, "policy.json"), JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  await writeFile(join(home, "registries.conf"), "");
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    XDG_RUNTIME_DIR: home,
    XDG_CONFIG_HOME: home,
    XDG_DATA_HOME: home,
    CONTAINERS_REGISTRIES_CONF: join(home, "registries.conf"),
    _CONTAINERS_ROOTLESS_UID: String(process.getuid?.() || 1000),
  };
  return shell(["skopeo", "--policy", join(home, "policy.json"), "--tmpdir", home, ...args].map((a) => `'${a}'`).join(" "), env);
}

const line = (label: string) => printed.split("\n").findIndex((l) => l.startsWith(label));
/** The command printed on the line after `label`. */
const commandAfter = (label: string) => printed.split("\n")[line(label) + 1]!.trim();

async function fetchCredentials(): Promise<CredentialsResponse> {
  const result = await shell(`${commandAfter("Mint a demo")}\n${commandAfter("Fetch registry credentials")}`);
  expect(result.stderr).toBe("");
  const body = JSON.parse(result.stdout) as CredentialsResponse;
  passwords.push(...body.credentials.map((c) => c.password));
  return body;
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "acr-local-"));
  sandbox = start(["local", "--port", "0", "--state-dir", stateDir]);
  await sandbox.waitFor(/Renew through Function Compute's InvokeFunction:\n.*\n/);
  printed = sandbox.stdout();
  registry = /registry {3}(\S+)/.exec(printed)![1]!;
}, 120_000);

afterAll(async () => {
  await sandbox?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

describe("acr-credential local", () => {
  it("prints the broker URL, the token command and a curl, and runs a seeded registry", () => {
    expect(printed).toMatch(/broker {5}http:\/\/127\.0\.0\.1:\d+/);
    expect(printed).toMatch(/TOKEN=\$\(node .*bin\/acr-credential\.mjs token --cluster demo --state-dir /);
    expect(printed).toMatch(/curl -s -X POST http:\/\/127\.0\.0\.1:\d+\/v1\/credentials -H "Authorization: Bearer \$TOKEN"/);
    expect(registry).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(printed).toContain("(demo/hello:latest)");
  });

  it("keeps the demo cluster's signing key under the state directory, readable by its owner only", async () => {
    const key = JSON.parse(await readFile(join(stateDir, "clusters", "demo", "signing-key.json"), "utf8")) as { privateJwk: { d?: string } };
    expect(key.privateJwk.d).toBeTruthy();
    const { stat } = await import("node:fs/promises");
    expect((await stat(join(stateDir, "clusters", "demo", "signing-key.json"))).mode & 0o077).toBe(0);
  });

  it("hands out credentials for a minted token with the printed commands", async () => {
    const body = await fetchCredentials();
    expect(body.cluster).toBe("demo");
    expect(body.credentials.map((c) => c.edition).sort()).toEqual(["enterprise", "personal"]);
    expect(body.credentials.find((c) => c.edition === "enterprise")!.domains).toEqual([registry]);
  });

  it("lets skopeo pull demo/hello from the sandbox registry with those credentials", async () => {
    const enterprise = (await fetchCredentials()).credentials.find((c) => c.edition === "enterprise")!;
    const result = await skopeo([
      "copy",
      "--src-tls-verify=false",
      "--src-creds",
      `${enterprise.username}:${enterprise.password}`,
      `docker://${enterprise.domains[0]}/demo/hello:latest`,
      `oci:${join(stateDir, "pulled")}:latest`,
    ]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const index = JSON.parse(await readFile(join(stateDir, "pulled", "index.json"), "utf8")) as { manifests: unknown[] };
    expect(index.manifests).toHaveLength(1);
  });

  it("refuses a pull with a wrong password", async () => {
    const result = await skopeo(["inspect", "--tls-verify=false", "--creds", "cr_temp_user:wrong-password", `docker://${registry}/demo/hello:latest`]);
    expect(result.code).not.toBe(0);
  });

  it("renews through Function Compute with the printed renew command, without printing passwords", async () => {
    const result = await shell(commandAfter("Renew through"));
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^demo\tcri-demo\tcn-hangzhou\trenewed until \d{4}-\d\d-\d\dT/m);
    expect(result.stdout).toMatch(/^demo\tpersonal\tcn-hangzhou\trenewed until /m);
    for (const password of passwords) expect(result.stdout).not.toContain(password);
  });

  it("writes request logs without a password or token", async () => {
    const log = await readFile(join(stateDir, "broker.log"), "utf8");
    expect(log).toMatch(/"msg":"request"/);
    for (const password of passwords) expect(log).not.toContain(password);
    expect(log).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
  });

  it("stops everything on Ctrl-C with exit code 0", async () => {
    const url = /broker {5}(\S+)/.exec(printed)![1]!;
    expect(await sandbox.stop("SIGINT")).toBe(0);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});
