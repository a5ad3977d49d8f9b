import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { accessOutcome, grantAccess, type RegistryGrant } from "../../emulator/registry/access.ts";
import { maxTokenLifetimeSeconds, registryTokenClaims, tokenLifetimeSeconds } from "../../emulator/registry/claims.ts";
import { decideTokenRequest, parseBasicCredentials, type TokenRequest } from "../../emulator/registry/realm.ts";
import { formatScope, isRepositoryName, parseScope, parseScopes } from "../../emulator/registry/scope.ts";

const t0 = Date.UTC(2030, 0, 1);

/** A grant covering `demo/hello` for pull only, and everything under `team/` for pull and push. */
function exampleGrant(expiresAt = t0 + 3600_000): RegistryGrant {
  return {
    subject: "acs:ram::1234567890123456:role/puller",
    expiresAt,
    allows: (repository, action) => (repository === "demo/hello" && action === "pull") || repository.startsWith("team/"),
  };
}

function basic(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;
}

const service = "registry.emulator.test";
const password = "TESTPASSWORD:with:colons";
const lookup = (username: string, given: string): RegistryGrant | undefined => (username === "cr_temp_user" && given === password ? exampleGrant() : undefined);

function request(overrides: Partial<TokenRequest> = {}): TokenRequest {
  return { method: "GET", service, scopes: ["repository:demo/hello:pull"], authorization: basic("cr_temp_user", password), ...overrides };
}

describe("scope parsing", () => {
  it("reads type, repository name and actions of a scope", () => {
    expect(parseScope("repository:demo/hello:pull,push")).toEqual({ type: "repository", name: "demo/hello", actions: ["pull", "push"] });
  });

  it("accepts deep repository paths and the separators docker allows", () => {
    expect(parseScope("repository:a/b.c/d_e/f__g/h--i:pull")?.name).toBe("a/b.c/d_e/f__g/h--i");
  });

  it("keeps resource types other than repository so that they can be refused explicitly", () => {
    expect(parseScope("registry:catalog:*")).toEqual({ type: "registry", name: "catalog", actions: ["*"] });
  });

  it.each([
    ["an empty string", ""],
    ["a bare type", "repository"],
    ["a scope without actions", "repository:demo/hello"],
    ["an empty action list", "repository:demo/hello:"],
    ["an empty name", "repository::pull"],
    ["an empty type", ":demo/hello:pull"],
    ["upper-case letters in the name", "repository:Demo/Hello:pull"],
    ["an empty path component", "repository:demo//hello:pull"],
    ["a parent-directory component", "repository:../etc:pull"],
    ["a leading slash", "repository:/demo:pull"],
    ["a trailing separator", "repository:demo-:pull"],
    ["a registry host inside the name", "repository:127.0.0.1:5000/demo:pull"],
    ["a name longer than 255 characters", `repository:${"a".repeat(256)}:pull`],
    ["whitespace in the action list", "repository:demo/hello:pull,\tpush"],
  ])("ignores a malformed scope: %s", (_label, scope) => {
    expect(parseScope(scope)).toBeUndefined();
  });

  it("merges repeated scope parameters for the same repository", () => {
    expect(parseScopes(["repository:demo/hello:pull", "repository:demo/hello:push", "repository:demo/hello:pull"])).toEqual([
      { type: "repository", name: "demo/hello", actions: ["pull", "push"] },
    ]);
  });

  it("reads several space-separated scopes in one parameter, in the order given", () => {
    expect(parseScopes(["repository:b/one:pull repository:a/two:push"]).map(formatScope)).toEqual(["repository:b/one:pull", "repository:a/two:push"]);
  });

  it("drops malformed scopes and keeps the valid ones beside them", () => {
    expect(parseScopes(["repository:demo/hello", "repository:demo/hello:pull", "nonsense"]).map(formatScope)).toEqual(["repository:demo/hello:pull"]);
  });

  it("lists each action once", () => {
    expect(parseScope("repository:demo/hello:pull,pull,,push")?.actions).toEqual(["pull", "push"]);
  });

  it("never throws and only ever yields repository names of docker's grammar", () => {
    fc.assert(
      fc.property(fc.string(), (scope) => {
        const parsed = parseScope(scope);
        if (parsed?.type === "repository") expect(isRepositoryName(parsed.name)).toBe(true);
      }),
    );
  });

  it("formats what it parses back to the same scope", () => {
    const component = fc.stringMatching(/^[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8})?$/);
    fc.assert(
      fc.property(fc.array(component, { minLength: 1, maxLength: 4 }), fc.subarray(["pull", "push", "delete"], { minLength: 1 }), (components, actions) => {
        const scope = `repository:${components.join("/")}:${actions.join(",")}`;
        const parsed = parseScope(scope);
        expect(parsed && formatScope(parsed)).toBe(scope);
      }),
    );
  });
});

describe("access intersection", () => {
  it("grants only the requested actions the grant allows", () => {
    const granted = grantAccess([{ type: "repository", name: "demo/hello", actions: ["pull", "push"] }], exampleGrant());
    expect(granted).toEqual([{ type: "repository", name: "demo/hello", actions: ["pull"] }]);
  });

  it("keeps an entry with no actions for a repository the grant does not cover", () => {
    const granted = grantAccess([{ type: "repository", name: "other/app", actions: ["pull"] }], exampleGrant());
    expect(granted).toEqual([{ type: "repository", name: "other/app", actions: [] }]);
  });

  it("never grants an action the grant was not asked for, even when allowed", () => {
    const granted = grantAccess([{ type: "repository", name: "team/api", actions: ["pull"] }], exampleGrant());
    expect(granted[0]?.actions).toEqual(["pull"]);
  });

  it("never grants delete, wildcard or catalog access", () => {
    const everything: RegistryGrant = { subject: "s", expiresAt: Number.MAX_SAFE_INTEGER, allows: () => true };
    const granted = grantAccess(
      [
        { type: "repository", name: "team/api", actions: ["*", "delete", "pull"] },
        { type: "registry", name: "catalog", actions: ["*"] },
      ],
      everything,
    );
    expect(granted.map((entry) => entry.actions)).toEqual([["pull"], []]);
  });

  it("describes each decision for the log", () => {
    expect(accessOutcome({ type: "repository", name: "a", actions: [] })).toBe("denied");
    expect(accessOutcome({ type: "repository", name: "a", actions: ["pull", "push"] })).toBe("granted:pull,push");
  });
});

describe("token claims", () => {
  const claims = registryTokenClaims({
    issuer: "emulator-dockerauth",
    service,
    subject: "acs:ram::1:role/puller",
    access: [{ type: "repository", name: "demo/hello", actions: ["pull"] }],
    issuedAt: 1_900_000_000,
    lifetimeSeconds: 300,
    jwtId: "id-1",
  });

  it("names the issuer, the registry service as a single audience string and the subject", () => {
    expect(claims).toMatchObject({ iss: "emulator-dockerauth", aud: service, sub: "acs:ram::1:role/puller", jti: "id-1" });
  });

  it("is valid from its issue time for its lifetime", () => {
    expect(claims).toMatchObject({ iat: 1_900_000_000, nbf: 1_900_000_000, exp: 1_900_000_300 });
  });

  it("carries the granted access unchanged", () => {
    expect(claims.access).toEqual([{ type: "repository", name: "demo/hello", actions: ["pull"] }]);
  });

  it("lives five minutes at most, and never longer than the credential it was issued for", () => {
    expect(maxTokenLifetimeSeconds).toBe(300);
    expect(tokenLifetimeSeconds(3600_000)).toBe(300);
    expect(tokenLifetimeSeconds(42_500)).toBe(42);
    expect(tokenLifetimeSeconds(300)).toBe(1);
  });
});

describe("Basic credentials", () => {
  it("splits at the first colon, so a password may contain colons", () => {
    expect(parseBasicCredentials(basic("cr_temp_user", "a:b:c"))).toEqual({ username: "cr_temp_user", password: "a:b:c" });
  });

  it("accepts the scheme in any case", () => {
    expect(parseBasicCredentials(`basic ${Buffer.from("u:p").toString("base64")}`)).toEqual({ username: "u", password: "p" });
  });

  it.each([
    ["no header", undefined],
    ["a bearer token", "Bearer abc"],
    ["no colon", `Basic ${Buffer.from("user").toString("base64")}`],
    ["an empty username", `Basic ${Buffer.from(":password").toString("base64")}`],
    ["text that is not base64", "Basic ???"],
  ])("rejects %s", (_label, header) => {
    expect(parseBasicCredentials(header)).toBeUndefined();
  });
});

describe("token request decisions", () => {
  const policy = { service, now: t0, lookup };

  it("grants a pull-only credential pull on its repository", () => {
    const decision = decideTokenRequest(request({ scopes: ["repository:demo/hello:pull,push"] }), policy);
    expect(decision).toMatchObject({
      granted: true,
      subject: "acs:ram::1234567890123456:role/puller",
      access: [{ type: "repository", name: "demo/hello", actions: ["pull"] }],
    });
    expect(decision.log).toEqual([
      { subject: "acs:ram::1234567890123456:role/puller", scope: "repository:demo/hello:pull,push", outcome: "granted:pull", status: 200 },
    ]);
  });

  it("answers a repository outside the grant with an empty access entry rather than an error", () => {
    const decision = decideTokenRequest(request({ scopes: ["repository:other/app:pull"] }), policy);
    expect(decision).toMatchObject({ granted: true, access: [{ type: "repository", name: "other/app", actions: [] }] });
    expect(decision.log[0]?.outcome).toBe("denied");
  });

  it("issues a token without access to valid credentials that ask for no scope (docker login)", () => {
    const decision = decideTokenRequest(request({ scopes: [] }), policy);
    expect(decision).toMatchObject({ granted: true, access: [] });
    expect(decision.log[0]?.outcome).toBe("authenticated");
  });

  it.each([
    ["with a scope", ["repository:demo/hello:pull"]],
    ["without a scope", []],
  ])("refuses a request without credentials %s with a Basic challenge", (_label, scopes) => {
    const decision = decideTokenRequest(request({ authorization: undefined, scopes }), policy);
    expect(decision).toMatchObject({ granted: false, status: 401, headers: { "WWW-Authenticate": `Basic realm="${service}"` } });
  });

  it("refuses a wrong password and a wrong username alike", () => {
    for (const authorization of [basic("cr_temp_user", "TESTWRONG"), basic("someone", password)]) {
      const decision = decideTokenRequest(request({ authorization }), policy);
      expect(decision).toMatchObject({ granted: false, status: 401, body: { errors: [{ code: "UNAUTHORIZED" }] } });
      expect(decision.log).toEqual([{ subject: "", scope: "repository:demo/hello:pull", outcome: "invalid-credentials", status: 401 }]);
    }
  });

  it("refuses a credential from the instant it expires", () => {
    const expiresAt = t0 + 3600_000;
    expect(decideTokenRequest(request(), { ...policy, now: expiresAt - 1 }).granted).toBe(true);
    const atExpiry = decideTokenRequest(request(), { ...policy, now: expiresAt });
    expect(atExpiry).toMatchObject({ granted: false, status: 401 });
    expect(atExpiry.log[0]).toMatchObject({ subject: "acs:ram::1234567890123456:role/puller", outcome: "expired", status: 401 });
  });

  it("shortens the token to what is left of the credential", () => {
    const decision = decideTokenRequest(request(), { ...policy, now: t0 + 3600_000 - 90_000 });
    expect(decision).toMatchObject({ granted: true, lifetimeSeconds: 90 });
  });

  it("requires the service parameter", () => {
    expect(decideTokenRequest(request({ service: undefined }), policy)).toMatchObject({ status: 400, body: { errors: [{ code: "MISSING_REQUIRED_FIELD" }] } });
    expect(decideTokenRequest(request({ service: "" }), policy)).toMatchObject({ status: 400, log: [{ outcome: "missing-service", status: 400 }] });
  });

  it("issues no token for another service, whose registry would not accept it anyway", () => {
    expect(decideTokenRequest(request({ service: "registry.elsewhere.test" }), policy)).toMatchObject({
      granted: false,
      status: 400,
      body: { errors: [{ code: "UNSUPPORTED_VALUE" }] },
    });
  });

  it("checks the request before the credentials, so a bad request never reaches the lookup", () => {
    let lookups = 0;
    const counting = { ...policy, lookup: () => ((lookups += 1), undefined) };
    decideTokenRequest(request({ service: undefined }), counting);
    decideTokenRequest(request({ method: "POST" }), counting);
    expect(lookups).toBe(0);
  });

  it("answers GET only", () => {
    expect(decideTokenRequest(request({ method: "POST" }), policy)).toMatchObject({
      granted: false,
      status: 405,
      headers: { Allow: "GET" },
      log: [{ status: 405 }],
    });
  });

  it("never writes the password into the decision log", () => {
    const decisions = [request(), request({ authorization: basic("cr_temp_user", `${password}x`) }), request({ scopes: [] })].map((each) =>
      decideTokenRequest(each, policy),
    );
    expect(JSON.stringify(decisions.map((decision) => decision.log))).not.toContain("TESTPASSWORD");
  });
});
