/** The one way validation problems are told (shared/schema-problems.ts). */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { describeIssues, fieldPath } from "../../shared/schema-problems.ts";

describe("validation problems", () => {
  it("writes a field's path as it is written in YAML or JSON", () => {
    expect(fieldPath(["clusters", 0, "registries", 2, "regionId"])).toBe("clusters[0].registries[2].regionId");
    expect(fieldPath([3, "id"])).toBe("[3].id");
    expect(fieldPath([])).toBe("(top level)");
  });

  it("names the first problems with their paths and counts the rest", () => {
    const schema = z.strictObject({ a: z.number(), b: z.array(z.string()), c: z.boolean() });
    const result = schema.safeParse({ a: "x", b: [1], c: 1 });
    if (result.success) throw new Error("expected a failure");
    expect(describeIssues(result.error)).toMatch(/^a: .+ \(and 2 more\)$/);
    expect(describeIssues(result.error, 3)).toMatch(/^a: [^;]+; b\[0\]: [^;]+; c: [^;]+$/);
    const top = z.object({}).safeParse("text");
    if (top.success) throw new Error("expected a failure");
    expect(describeIssues(top.error)).toMatch(/^\(top level\): /);
  });
});
