// The README's `bin/iohub` section runs as written: every sh block in it,
// run by bash from the repository with HOME in a temp dir (so `~/.local`
// is a scratch install root), ends by printing iohub's version.

import { assert, assertEquals } from "@std/assert";
import { withTempDir } from "../temp_dir.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const SECTION = "## `bin/iohub`";

/** The sh code blocks of the README's `bin/iohub` section. */
function sectionBlocks(): string[] {
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  const start = readme.indexOf(SECTION);
  assert(start >= 0, `README has no '${SECTION}' section`);
  const end = readme.indexOf("\n## ", start + SECTION.length);
  const section = readme.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

Deno.test("README: the bin/iohub, link and deno install examples run as written", async (t) => {
  const { version } = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const blocks = sectionBlocks();
  assertEquals(blocks.length, 3, "the version/help, link and install blocks");
  const granted = await new Deno.Command("bash", {
    args: [
      "-c",
      'source scripts/permissions.sh; echo "${IOHUB_PERMISSIONS[@]}"',
    ],
    cwd: ROOT,
  }).output();
  const flags = new TextDecoder().decode(granted.stdout).trim();
  assert(flags.startsWith("--allow-"), flags);
  assert(blocks[2].includes(` ${flags} main.ts`), "install grants other flags");
  // The installer would otherwise fetch npm packages into a fresh cache.
  const denoDir = Deno.env.get("DENO_DIR") ??
    `${Deno.env.get("HOME")}/.cache/deno`;
  for (const block of blocks) {
    await t.step(block.split("\n")[0], async () => {
      await withTempDir("iohub-readme-home-", async (home) => {
        const out = await new Deno.Command("bash", {
          args: ["-euo", "pipefail", "-c", block],
          cwd: ROOT,
          env: { HOME: home, DENO_DIR: denoDir },
          stdin: "null",
        }).output();
        const stdout = new TextDecoder().decode(out.stdout);
        assertEquals(
          out.code,
          0,
          `${stdout}${new TextDecoder().decode(out.stderr)}`,
        );
        assert(
          stdout.startsWith(`iohub ${version} (deno ${Deno.version.deno})\n`),
          stdout,
        );
      });
    });
  }
});
