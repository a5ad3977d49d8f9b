/**
 * Which kubeconfig files count as "configured" (the client library would fall back to localhost:8080
 * without one); the refusal itself is pinned through the CLI in commands/refresh.test.ts.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultKubeConfigFiles } from "../../cli/kubeconfig.ts";

let dir: string;
let config: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "kubeconfig-"));
  config = join(dir, "config");
  await writeFile(
    config,
    "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("defaultKubeConfigFiles", () => {
  it("takes the files of KUBECONFIG that exist, and not ~/.kube/config then", () => {
    expect(defaultKubeConfigFiles({ KUBECONFIG: [join(dir, "absent"), config].join(delimiter), HOME: dir })).toEqual([config]);
  });

  it("falls back to ~/.kube/config, and finds nothing where neither exists", () => {
    expect(defaultKubeConfigFiles({ HOME: dir })).toEqual([]);
    expect(defaultKubeConfigFiles({ KUBECONFIG: join(dir, "absent"), HOME: dir })).toEqual([]);
  });
});
