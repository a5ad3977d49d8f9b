import { describe, expect, it } from "vitest";
import { imageEnvironment } from "../../bench/refresher.ts";

describe("the refresher's environment in the benchmark", () => {
  it("is the ENV lines of the image's Dockerfile, quoted or not", () => {
    const dockerfile = 'FROM x\nENV NODE_ENV=production\nENV NODE_OPTIONS="--max-old-space-size=128 --max-semi-space-size=2"\nENTRYPOINT ["node"]\n';
    expect(imageEnvironment(dockerfile)).toEqual({ NODE_ENV: "production", NODE_OPTIONS: "--max-old-space-size=128 --max-semi-space-size=2" });
  });

  it("refuses a Dockerfile without NODE_OPTIONS rather than guess the image's flags", () => {
    expect(() => imageEnvironment("FROM x\nENV NODE_ENV=production\n")).toThrow(/NODE_OPTIONS/);
  });
});
