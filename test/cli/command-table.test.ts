/**
 * README's command table against the CLI's real flags (the options each command parses) and its
 * `--help`, so neither can drift from the other.
 */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { commands } from "../../cli/main.ts";

/** Each row's command cell, by command name: the first column of the "Command line" table. */
async function readmeRows(): Promise<Map<string, string>> {
  const readme = await readFile(new URL("../../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf("## Command line"), readme.indexOf("\n## ", readme.indexOf("## Command line") + 1));
  const rows = new Map<string, string>();
  for (const line of section.split("\n")) {
    const cell = /^\| `([^`]+)` \|/.exec(line)?.[1];
    if (cell !== undefined) rows.set(cell.split(" ")[0] as string, cell);
  }
  return rows;
}

const flagsIn = (text: string): string[] => [...new Set([...text.matchAll(/(?<![\w-])--([a-z][a-z-]*)/g)].map((match) => match[1] as string))].sort();

describe("README's command table", () => {
  it("has a row for every command and one for --version, and nothing else", async () => {
    expect([...(await readmeRows()).keys()].sort()).toEqual([...Object.keys(commands), "--version"].sort());
  });

  it.each(Object.keys(commands))("lists exactly the flags `%s` parses, each of which its --help explains", async (name) => {
    const command = await commands[name]!.load();
    const parsed = Object.keys(command.options).sort();
    expect(flagsIn((await readmeRows()).get(name) ?? "")).toEqual(parsed);
    expect(flagsIn(command.usage).filter((flag) => flag !== "help")).toEqual(expect.arrayContaining(parsed));
    for (const flag of parsed) expect(command.usage).toMatch(new RegExp(`^\\s+--${flag}\\b`, "m"));
  });
});
