import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { builtBinaryDir, findKubeBinaries, pinnedVersions } from "./binaries.ts";

const built = "/repo/.cache/kube/v1.36.3/bin";
const executables =
  (...paths: string[]) =>
  (path: string) =>
    paths.includes(path);

describe("findKubeBinaries", () => {
  it("prefers TEST_ASSET_KUBE_APISERVER and TEST_ASSET_ETCD over everything else", () => {
    const lookup = findKubeBinaries(
      { TEST_ASSET_KUBE_APISERVER: "/opt/a/kube-apiserver", TEST_ASSET_ETCD: "/opt/b/etcd", KUBEBUILDER_ASSETS: "/assets" },
      built,
      executables("/opt/a/kube-apiserver", "/opt/b/etcd", "/assets/kube-apiserver", "/assets/etcd", `${built}/kube-apiserver`, `${built}/etcd`),
    );
    expect(lookup).toEqual({
      found: true,
      binaries: { kubeApiserver: "/opt/a/kube-apiserver", etcd: "/opt/b/etcd", source: { kubeApiserver: "TEST_ASSET", etcd: "TEST_ASSET" } },
    });
  });

  it("uses KUBEBUILDER_ASSETS before the built folder, per program", () => {
    const lookup = findKubeBinaries(
      { KUBEBUILDER_ASSETS: "/assets" },
      built,
      executables("/assets/kube-apiserver", `${built}/kube-apiserver`, `${built}/etcd`),
    );
    expect(lookup).toEqual({
      found: true,
      binaries: { kubeApiserver: "/assets/kube-apiserver", etcd: `${built}/etcd`, source: { kubeApiserver: "KUBEBUILDER_ASSETS", etcd: "built" } },
    });
  });

  it("falls back to the folder build.sh fills", () => {
    const lookup = findKubeBinaries({}, built, executables(`${built}/kube-apiserver`, `${built}/etcd`));
    expect(lookup.found && lookup.binaries.kubeApiserver).toBe(`${built}/kube-apiserver`);
  });

  it("says how to build the binaries when none are found", () => {
    const lookup = findKubeBinaries({ KUBEBUILDER_ASSETS: "/empty" }, built, executables(`${built}/etcd`));
    expect(lookup).toEqual({ found: false, reason: expect.stringContaining("kube-apiserver not found: run `bash test/kube/build.sh`") });
    expect(lookup.found || lookup.reason.split("\n")).toHaveLength(1);
  });

  it("reports a TEST_ASSET_* that names no executable instead of silently using another binary", () => {
    const lookup = findKubeBinaries({ TEST_ASSET_ETCD: "/nowhere/etcd" }, built, executables(`${built}/kube-apiserver`, `${built}/etcd`));
    expect(lookup).toEqual({ found: false, reason: expect.stringMatching(/^TEST_ASSET_ETCD=\/nowhere\/etcd is not an executable file/) });
  });
});

describe("pinnedVersions", () => {
  it("reads the Kubernetes and etcd versions from go.mod's requirements, not its replaces", () => {
    const goMod = [
      "module example.test/kube",
      "tool k8s.io/kubernetes/cmd/kube-apiserver",
      "require (",
      "\tgo.etcd.io/etcd/server/v3 v3.6.8 // indirect",
      "\tk8s.io/kubernetes v1.36.3 // indirect",
      ")",
      "replace k8s.io/api => k8s.io/api v0.36.3",
    ].join("\n");
    expect(pinnedVersions(goMod)).toEqual({ kubernetes: "v1.36.3", etcd: "v3.6.8" });
  });

  it("finds both versions in the committed go.mod and names the build folder after the Kubernetes one", () => {
    const goMod = readFileSync(new URL("./go.mod", import.meta.url), "utf8");
    const { kubernetes, etcd } = pinnedVersions(goMod);
    expect(kubernetes).toMatch(/^v1\.\d+\.\d+$/);
    expect(etcd).toMatch(/^v3\.\d+\.\d+$/);
    expect(builtBinaryDir(kubernetes, "/repo")).toBe(`/repo/.cache/kube/${kubernetes}/bin`);
  });
});
