import { describe, expect, it } from "vitest";
import { dockerConfig, dockerConfigJson } from "../../shared/docker-config.ts";

describe("dockerConfig", () => {
  it("writes one auths entry per domain with username, password and auth = base64(user:password)", () => {
    const config = dockerConfig([
      {
        domains: ["foo-registry.cn-hangzhou.cr.aliyuncs.com", "foo-registry-vpc.cn-hangzhou.cr.aliyuncs.com"],
        username: "cr_temp_user",
        password: "p@ss:word",
      },
    ]);
    expect(Object.keys(config.auths).sort()).toEqual(["foo-registry-vpc.cn-hangzhou.cr.aliyuncs.com", "foo-registry.cn-hangzhou.cr.aliyuncs.com"]);
    for (const entry of Object.values(config.auths)) {
      expect(entry.username).toBe("cr_temp_user");
      expect(entry.password).toBe("p@ss:word");
      expect(Buffer.from(entry.auth, "base64").toString("utf8")).toBe("cr_temp_user:p@ss:word");
    }
  });

  it("gives the same bytes whatever the order and case of the domains", () => {
    const a = dockerConfigJson([{ domains: ["B.example.com", "a.example.com"], username: "u", password: "p" }]);
    const b = dockerConfigJson([{ domains: ["a.example.com", "b.example.com", "a.example.com"], username: "u", password: "p" }]);
    expect(a).toBe(b);
    expect(JSON.parse(a)).toHaveProperty(["auths", "b.example.com"]);
  });

  it("refuses a user name with a colon, which the auth field cannot carry", () => {
    expect(() => dockerConfig([{ domains: ["r.example.com"], username: "a:b", password: "p" }])).toThrow(/must not contain ':'/);
  });
});
