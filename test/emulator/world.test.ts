import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDirectory } from "../../emulator/ram/directory.ts";
import { instanceEndpoints, loadWorld, parseWorld, parseWorldText } from "../../emulator/world.ts";
import { testWorld } from "./world.ts";
import { thrownBy } from "../support/errors.ts";

const demoFile = new URL("../../emulator/worlds/demo.yaml", import.meta.url).pathname;

describe("world files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "world-test-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("loads the shipped demo world with its accounts, instance and Personal registry", async () => {
    const world = await loadWorld(demoFile);
    const directory = createDirectory(world);
    expect(world.accounts.map((account) => account.id)).toEqual(["1000000000000001", "2000000000000002"]);
    expect(directory.instance("cri-demo")?.instance).toMatchObject({ name: "demo", region: "cn-hangzhou", repositories: ["demo/hello"] });
    expect(directory.role("acs:ram::2000000000000002:role/acr-pull-cross")).toBeDefined();
    expect(world.accounts[0]?.personal).toEqual([{ region: "cn-hangzhou", repositories: ["demo/hello"] }]);
    expect(directory.oidcProvider("acs:ram::1000000000000001:oidc-provider/ack-rrsa-demo")?.provider.clientIds).toEqual(["sts.aliyuncs.com"]);
  });

  it("names the file and the path of a bad field in one line", () => {
    const error = thrownBy(() =>
      parseWorldText(
        'accounts:\n  - id: "1000000000000001"\n    roles:\n      - name: r\n        maxSessionDuration: 60\n        trustPolicy: { Statement: [] }\n',
        { source: "bad.yaml" },
      ),
    );
    expect(error.code).toBe("ConfigInvalid");
    expect(error.message).toMatch(/^world bad\.yaml: accounts\[0\]\.roles\[0\]\.maxSessionDuration: /);
    expect(error.message).not.toMatch(/\n/);
  });

  it("bounds an OIDC provider's issuanceLimitTime to RAM's 1-168 hours and the role chaining cap to 900-43200 s", () => {
    const provider = (issuanceLimitTime: number) => ({
      accounts: [
        { id: "1000000000000001", oidcProviders: [{ name: "p", issuer: "https://issuer.example", clientIds: ["sts.aliyuncs.com"], issuanceLimitTime }] },
      ],
    });
    expect(thrownBy(() => parseWorld(provider(169), { source: "w" })).message).toMatch(/oidcProviders\[0\]\.issuanceLimitTime/);
    expect(thrownBy(() => parseWorld(provider(0), { source: "w" })).message).toMatch(/issuanceLimitTime/);
    expect(
      parseWorld(
        {
          accounts: [{ id: "1000000000000001", oidcProviders: [provider(1).accounts[0]!.oidcProviders[0]!].map(({ issuanceLimitTime: _, ...rest }) => rest) }],
        },
        { source: "w" },
      ).accounts[0]!.oidcProviders[0]!.issuanceLimitTime,
    ).toBe(12);
    expect(thrownBy(() => parseWorld({ ...testWorld(), sts: { roleChainingMaxDuration: 60 } }, { source: "w" })).message).toMatch(
      /sts\.roleChainingMaxDuration/,
    );
  });

  it("requires 16-digit account ids written as strings", () => {
    expect(thrownBy(() => parseWorld({ accounts: [{ id: 1000000000000001 }] }, { source: "w" })).message).toMatch(/accounts\[0\]\.id: .*16-digit string/);
    expect(thrownBy(() => parseWorld({ accounts: [{ id: "123" }] }, { source: "w" })).message).toMatch(/accounts\[0\]\.id/);
  });

  it("refuses a policy reference that names no policy of the account", () => {
    const world = testWorld();
    world.accounts[0]!.users![0]!.policies = ["NoSuchPolicy"];
    expect(thrownBy(() => parseWorld(world, { source: "w" })).message).toMatch(/accounts\[0\]\.users\[0\]\.policies\[0\]: no policy named 'NoSuchPolicy'/);
  });

  it("refuses an access key or instance id used twice", () => {
    const world = testWorld();
    world.accounts[0]!.users![1]!.accessKeys = world.accounts[0]!.users![0]!.accessKeys;
    expect(thrownBy(() => parseWorld(world, { source: "w" })).message).toMatch(/accessKeys\[0\]\.id: access key .* appears twice/);
  });

  it("refuses unknown fields and unknown condition operators", () => {
    expect(thrownBy(() => parseWorld({ accounts: [{ id: "1000000000000001", userz: [] }] }, { source: "w" })).message).toMatch(/userz|Unrecognized/);
    const world = testWorld();
    world.accounts[0]!.roles![0]!.trustPolicy = {
      Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Principal: "*", Condition: { NumericEquals: { x: "1" } } }],
    } as never;
    expect(thrownBy(() => parseWorld(world, { source: "w" })).message).toMatch(/trustPolicy\.Statement\[0\]\.Condition/);
  });

  it("refuses a provider with both inline keys and a JWKS URL", () => {
    const world = testWorld({
      oidcProviders: [
        {
          name: "p",
          issuer: "https://issuer.example",
          clientIds: ["sts.aliyuncs.com"],
          jwks: { keys: [{ kty: "RSA" }] },
          jwksUri: "https://issuer.example/jwks",
        },
      ],
    });
    expect(thrownBy(() => parseWorld(world, { source: "w" })).message).toMatch(/oidcProviders\[0\].*either jwks or jwksUri/);
  });

  it("resolves a provider's relative caFile against the world file's directory", async () => {
    const file = join(dir, "world.yaml");
    await writeFile(
      file,
      `accounts:\n  - id: "1000000000000001"\n    oidcProviders:\n      - { name: p, issuer: "https://issuer.example", clientIds: [a], caFile: certs/ca.pem }\n`,
    );
    const world = await loadWorld(file);
    expect(world.accounts[0]?.oidcProviders[0]?.caFile).toBe(join(dir, "certs", "ca.pem"));
  });

  it("reports a missing file as FileUnreadable and broken YAML as ConfigInvalid", async () => {
    await expect(loadWorld(join(dir, "absent.yaml"))).rejects.toMatchObject({ code: "FileUnreadable" });
    const broken = join(dir, "broken.yaml");
    await writeFile(broken, "accounts: [\n");
    await expect(loadWorld(broken)).rejects.toMatchObject({ code: "ConfigInvalid", message: expect.stringMatching(/not valid YAML/) });
  });

  it("gives an instance without endpoints the standard internet and vpc domains", () => {
    const world = parseWorld(testWorld(), { source: "w" });
    const demo = world.accounts[0]!.instances.find((instance) => instance.id === "cri-demo")!;
    expect(instanceEndpoints(demo).map((endpoint) => [endpoint.type, endpoint.domains.map((d) => d.domain)])).toEqual([
      ["internet", ["demo-registry.cn-hangzhou.cr.aliyuncs.com"]],
      ["vpc", ["demo-registry-vpc.cn-hangzhou.cr.aliyuncs.com"]],
    ]);
  });
});
