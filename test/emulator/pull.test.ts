import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../emulator/index.ts";
import { dockerRegistryAvailable } from "../../emulator/registry/index.ts";
import { findExecutable } from "../../emulator/registry/docker-registry.ts";
import { writeOciLayout } from "../../emulator/registry/oci-layout.ts";
import { assumeRole, crCall, personalToken, sessionKey } from "./clients.ts";
import { skopeoIn, type SkopeoResult } from "../../emulator/registry/skopeo.ts";
import { accountA, broker, instances, roles, testWorld } from "./world.ts";

/**
 * The whole path a cluster's pull takes, with nothing mocked: STS and CR through the real SDK,
 * the temporary password from GetAuthorizationToken, a real docker-registry with token auth, and skopeo.
 */
const missingTools = [...(dockerRegistryAvailable() ? [] : ["docker-registry"]), ...(findExecutable("skopeo") === undefined ? ["skopeo"] : [])];
const skipped = missingTools.length > 0 && process.env.CI !== "true";
if (skipped)
  console.log(`skipping test/emulator/pull.test.ts: ${missingTools.join(" and ")} not installed (install the Debian packages; required when CI=true)`);

interface Login {
  username: string;
  password: string;
  expiresAt: number;
}

describe.skipIf(skipped)("pulling from the emulator's registry with credentials from GetAuthorizationToken", () => {
  let emulator: Emulator;
  let work: string;
  let skopeo: (args: string[]) => Promise<SkopeoResult>;
  let manifestDigest: string;
  let pushOutcomes: SkopeoResult[];

  const image = (repository: string, tag = "v1") => `docker://${emulator.endpoints.registry}/${repository}:${tag}`;
  const inspect = (login: Pick<Login, "username" | "password">, repository: string) =>
    skopeo(["inspect", "--tls-verify=false", "--creds", `${login.username}:${login.password}`, image(repository)]);

  async function enterpriseLogin(role: string, session: string): Promise<Login> {
    const key = sessionKey(await assumeRole(emulator.endpoints.sts, broker, { RoleArn: role, RoleSessionName: session }));
    const body = await crCall(emulator.endpoints.cr, key, "GetAuthorizationToken", { InstanceId: instances.demo });
    return { username: body["TempUsername"] as string, password: body["AuthorizationToken"] as string, expiresAt: body["ExpireTime"] as number };
  }

  beforeAll(async () => {
    if (missingTools.length > 0) throw new Error(`${missingTools.join(" and ")} not installed; CI needs the Debian packages docker-registry and skopeo`);
    work = await mkdtemp(join(tmpdir(), "emulator-pull-"));
    skopeo = await skopeoIn(work);
    emulator = await startEmulator({ world: testWorld(), registry: true });
    const layout = join(work, "layout");
    ({ manifestDigest } = await writeOciLayout(layout, { tag: "v1" }));
    // acr-push may push anywhere in account A; acr-pull may only pull demo/* of cri-demo.
    const pusher = await enterpriseLogin(roles.acrPush, "publisher");
    const dest = ["--dest-tls-verify=false", "--dest-creds", `${pusher.username}:${pusher.password}`];
    pushOutcomes = [
      await skopeo(["copy", ...dest, `oci:${layout}:v1`, image("demo/hello")]),
      await skopeo(["copy", ...dest, `oci:${layout}:v1`, image("secret/vault")]),
    ];
  });
  afterAll(async () => {
    await emulator?.close();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  it("pushes with a credential whose role has cr:PushRepository", () => {
    expect(pushOutcomes.map((result) => [result.code, result.stderr])).toEqual([
      [0, ""],
      [0, ""],
    ]);
  });

  it("inspects the pushed image with a pull credential", async () => {
    const login = await enterpriseLogin(roles.acrPull, "cluster-a");
    const result = await inspect(login, "demo/hello");
    expect(result.stderr).toBe("");
    expect((JSON.parse(result.stdout) as { Digest: string }).Digest).toBe(manifestDigest);
  });

  it("copies the image out to a local layout with a pull credential", async () => {
    const login = await enterpriseLogin(roles.acrPull, "cluster-b");
    const result = await skopeo([
      "copy",
      "--src-tls-verify=false",
      "--src-creds",
      `${login.username}:${login.password}`,
      image("demo/hello"),
      `oci:${join(work, "pulled")}:v1`,
    ]);
    expect(result).toMatchObject({ code: 0, stderr: "" });
  });

  it("refuses a wrong password", async () => {
    const login = await enterpriseLogin(roles.acrPull, "cluster-c");
    const result = await inspect({ ...login, password: `${login.password}x` }, "demo/hello");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/unauthorized|authentication required/i);
  });

  it("refuses the credential once the emulator clock passes its ExpireTime", async () => {
    const login = await enterpriseLogin(roles.acrPull, "cluster-d");
    expect((await inspect(login, "demo/hello")).code).toBe(0);
    const shift = login.expiresAt - emulator.clock.now() + 1000;
    emulator.clock.advance(shift);
    try {
      const result = await inspect(login, "demo/hello");
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/unauthorized|authentication required|expired/i);
    } finally {
      emulator.clock.advance(-shift);
    }
    expect(emulator.log.filter({ api: "registry:Auth", outcome: "expired" })).toMatchObject([
      { principal: `acs:ram::${accountA}:assumed-role/acr-pull/cluster-d`, status: 401 },
    ]);
  });

  it("refuses a repository outside the caller's cr:PullRepository permissions", async () => {
    const login = await enterpriseLogin(roles.acrPull, "cluster-e");
    const result = await inspect(login, "secret/vault");
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/denied|unauthorized|authentication required/i);
    expect(
      emulator.log
        .filter({ api: "registry:Auth", principal: `acs:ram::${accountA}:assumed-role/acr-pull/cluster-e` })
        .map((entry) => [entry.resource, entry.outcome]),
    ).toContainEqual(["repository:secret/vault:pull", "denied"]);
  });

  it("lets a Personal Edition login from GET /tokens pull what the role may pull", async () => {
    const key = sessionKey(await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPush, RoleSessionName: "personal" }));
    const body = JSON.parse((await personalToken(emulator.endpoints.cr, key)) as string) as { data: { tempUserName: string; authorizationToken: string } };
    const result = await inspect({ username: body.data.tempUserName, password: body.data.authorizationToken }, "demo/hello");
    expect(result.code).toBe(0);
  });
});
