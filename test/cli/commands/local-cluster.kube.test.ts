/**
 * `acr-credential local --with-cluster`, the whole path on one machine: the sandbox starts its own
 * control plane, runs the refresher against it, and the kubectl lines it prints show the pull Secret;
 * skopeo pulls the demo image with exactly that Secret's `.dockerconfigjson`.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerRegistryAvailable } from "../../../emulator/registry/index.ts";
import { findExecutable } from "../../../emulator/registry/docker-registry.ts";
import { builtBinaryDir, isExecutableFile, pinnedVersions } from "../../kube/binaries.ts";
import { kubeAvailable } from "../../kube/cluster.ts";
import { shell, start, type Running } from "./support.ts";

const kubectlBuilt = isExecutableFile(join(builtBinaryDir(pinnedVersions().kubernetes), "kubectl"));
const pullTools = dockerRegistryAvailable() && findExecutable("skopeo") !== undefined;

describe.skipIf(!kubeAvailable() || !kubectlBuilt)("acr-credential local --with-cluster", () => {
  let stateDir: string;
  let sandbox: Running;
  let printed: string;

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "acr-local-cluster-"));
    sandbox = start(["local", "--port", "0", "--state-dir", stateDir, "--with-cluster"]);
    await sandbox.waitFor(/get serviceaccount default .*\n/, "stdout", 150_000);
    printed = sandbox.stdout();
  }, 180_000);

  afterAll(async () => {
    await sandbox?.stop();
    if (stateDir !== undefined) await rm(stateDir, { recursive: true, force: true });
  });

  const printedLine = (pattern: RegExp) =>
    printed
      .split("\n")
      .find((line) => pattern.test(line))!
      .trim();

  it("prints a kubectl line that shows the pull Secret the refresher wrote", async () => {
    const line = printedLine(/kubectl .* get secret /);
    expect(printed).toContain("The pull Secret the refresher wrote in namespace demo");
    const shown = await shell(line);
    expect(shown.stderr).toBe("");
    expect(shown.code).toBe(0);
    const name = /get secret (\S+)/.exec(line)![1]!;
    expect(shown.stdout).toMatch(new RegExp(`^${name}\\s+kubernetes\\.io/dockerconfigjson\\s+1\\s`, "m"));
  });

  it("prints a kubectl line that shows the Secret attached to the demo namespace's default ServiceAccount", async () => {
    const name = /get secret (\S+)/.exec(printedLine(/kubectl .* get secret /))![1]!;
    const attached = await shell(printedLine(/kubectl .* get serviceaccount default /));
    expect(attached.code).toBe(0);
    expect(JSON.parse(attached.stdout)).toEqual([{ name }]);
  });

  it.skipIf(!pullTools)("pulls the demo image with exactly that Secret's .dockerconfigjson", async () => {
    const secretLine = printedLine(/kubectl .* get secret /);
    const data = await shell(`${secretLine} -o jsonpath='{.data.\\.dockerconfigjson}'`);
    const home = join(stateDir, "skopeo-home");
    await mkdir(home, { recursive: true });
    const authFile = join(home, "auth.json");
    await writeFile(authFile, Buffer.from(data.stdout, "base64"));
    await writeFile(join(home, "policy.json"), JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
    await writeFile(join(home, "registries.conf"), "");
    const registry = /registry {3}(\S+)/.exec(printed)![1]!;
    const env = { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: home, XDG_CONFIG_HOME: home, CONTAINERS_REGISTRIES_CONF: join(home, "registries.conf") };
    const inspected = await shell(
      `skopeo --policy '${join(home, "policy.json")}' inspect --tls-verify=false --authfile '${authFile}' docker://${registry}/demo/hello:latest`,
      env,
    );
    expect(inspected.stderr).toBe("");
    expect(inspected.code).toBe(0);
    expect(JSON.parse(inspected.stdout)).toHaveProperty("Digest");
  });

  it("stops the control plane with everything else on Ctrl-C, exit 0", async () => {
    const apiserver = /cluster {4}(https:\/\/\S+)/.exec(printed)![1]!;
    expect(await sandbox.stop("SIGINT")).toBe(0);
    await expect(fetch(`${apiserver}/readyz`)).rejects.toThrow();
  });
});
