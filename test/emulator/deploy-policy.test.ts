/**
 * The target-role policies docs/deploy.md recommends, run through the real SDK against the
 * emulator's CR: each must let the role obtain a password, list the endpoints and pull.
 */
import { readFile } from "node:fs/promises";
import { decodeJwt } from "jose";
import { afterEach, describe, expect, it } from "vitest";
import { registryService, startEmulator, type Emulator } from "../../emulator/index.ts";
import { crCall, failure } from "./clients.ts";

const deployDoc = new URL("../../docs/deploy.md", import.meta.url);
// The docs' example accounts have 12 digits; the emulator's have 16, as real account ids do.
const docAccount = "222222222222";
const account = "2222222222222222";
const user = { accessKeyId: "TESTAKDOCPOLICY01", accessKeySecret: "test-secret-doc-policy-01" };

/** Every JSON block of the document that grants cr:PullRepository: the target roles' policies. */
async function pullPolicies(): Promise<object[]> {
  const text = await readFile(deployDoc, "utf8");
  const blocks = [...text.matchAll(/```json\n([\s\S]*?)```/g)].map((match) => match[1]!);
  return blocks.filter((block) => block.includes("cr:PullRepository")).map((block) => JSON.parse(block.replaceAll(docAccount, account)) as object);
}

async function pullGranted(emulator: Emulator, password: string, repository: string): Promise<boolean> {
  const url = `${emulator.endpoints.realm}?service=${encodeURIComponent(registryService)}&scope=${encodeURIComponent(`repository:${repository}:pull`)}`;
  const response = await fetch(url, { headers: { authorization: `Basic ${Buffer.from(`cr_temp_user:${password}`).toString("base64")}` } });
  if (response.status !== 200) return false;
  const { token } = (await response.json()) as { token: string };
  const access = decodeJwt(token)["access"] as Array<{ name: string; actions: string[] }>;
  return access.some((entry) => entry.name === repository && entry.actions.includes("pull"));
}

describe("the target-role policies of docs/deploy.md", () => {
  let emulator: Emulator | undefined;
  afterEach(async () => {
    await emulator?.close();
    emulator = undefined;
  });

  it("are found in the document", async () => {
    expect((await pullPolicies()).length).toBeGreaterThanOrEqual(2);
  });

  it("each lets the role get a password for cri-abc, list its endpoints and pull from it", async () => {
    for (const policy of await pullPolicies()) {
      emulator = await startEmulator({
        world: {
          accounts: [
            {
              id: account,
              users: [{ name: "target", accessKeys: [{ id: user.accessKeyId, secret: user.accessKeySecret }], policies: [policy as never] }],
              instances: [{ id: "cri-abc", name: "abc", region: "cn-hangzhou", repositories: ["apps/web"] }],
            },
          ],
        },
      });
      const login = await crCall(emulator.endpoints.cr, user, "GetAuthorizationToken", { InstanceId: "cri-abc" });
      expect(login).toMatchObject({ IsSuccess: true, TempUsername: "cr_temp_user" });
      await expect(crCall(emulator.endpoints.cr, user, "ListInstanceEndpoint", { InstanceId: "cri-abc" })).resolves.toMatchObject({ IsSuccess: true });
      expect(await pullGranted(emulator, login["AuthorizationToken"] as string, "apps/web")).toBe(true);
      await emulator.close();
      emulator = undefined;
    }
  });

  it("a policy scoping cr:GetAuthorizationToken to the instance is refused, as real CR refuses it", async () => {
    const instanceScoped = {
      Statement: [
        { Effect: "Allow", Action: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint"], Resource: `acs:cr:cn-hangzhou:${account}:instance/cri-abc` },
      ],
    };
    emulator = await startEmulator({
      world: {
        accounts: [
          {
            id: account,
            users: [{ name: "target", accessKeys: [{ id: user.accessKeyId, secret: user.accessKeySecret }], policies: [instanceScoped as never] }],
            instances: [{ id: "cri-abc", name: "abc", region: "cn-hangzhou" }],
          },
        ],
      },
    });
    expect(await failure(crCall(emulator.endpoints.cr, user, "GetAuthorizationToken", { InstanceId: "cri-abc" }))).toMatchObject({
      code: "NoPrivilege",
      statusCode: 403,
    });
  });
});
