// `deno task compile` (scripts/compile.sh): a binary that answers as a
// compiled iohub, or, where Deno's denort runtime is out of reach or
// DENORT_BIN is not one, a single line saying what to do and exit 1.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { haveBinutils } from "../requirements.ts";
import { withTempDir } from "../temp_dir.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/**
 * A test of scripts/compile.sh run with `env` to build `iohub` in a fresh
 * directory (removed afterwards): `check` gets the script's exit status and
 * stderr, and the directory.
 */
function compileTest(
  name: string,
  env: Record<string, string>,
  check: (
    r: { code: number; stderr: string },
    dir: string,
  ) => void | Promise<void>,
): void {
  Deno.test({
    name,
    ignore: !haveBinutils(),
    async fn(): Promise<void> {
      await withTempDir("iohub-compile-", async (dir) => {
        const out = await new Deno.Command("bash", {
          args: ["scripts/compile.sh", `${dir}/iohub`],
          cwd: ROOT,
          env,
          stdin: "null",
          stdout: "null",
        }).output();
        const stderr = new TextDecoder().decode(out.stderr);
        await check({ code: out.code, stderr }, dir);
      });
    },
  });
}

compileTest(
  "compile: a compiled iohub, or one line on how to get denort",
  {},
  async (r, dir) => {
    if (r.code === 0) {
      const v = await new Deno.Command(`${dir}/iohub`, { args: ["--version"] })
        .output();
      assertStringIncludes(new TextDecoder().decode(v.stdout), ", compiled)");
    } else {
      assertEquals(r.code, 1);
      assertEquals(r.stderr.split("\n").length, 2, r.stderr);
      assertStringIncludes(
        r.stderr,
        "compile: deno compile could not download its denort runtime",
      );
      assertStringIncludes(r.stderr, "set DENORT_BIN to a denort");
    }
  },
);

compileTest(
  "compile: DENORT_BIN pointing at deno itself is refused in one line",
  { DENORT_BIN: Deno.execPath() },
  (r, dir) => {
    assertEquals(r, {
      code: 1,
      stderr:
        `compile: the binary built does not run iohub: DENORT_BIN=${Deno.execPath()} must be a denort runtime, not deno itself\n`,
    });
    assert(
      [...Deno.readDirSync(dir)].length === 0,
      "the useless binary is removed",
    );
  },
);

compileTest(
  "compile: a DENORT_BIN that does not exist is named in one line",
  { DENORT_BIN: "/nonexistent/denort" },
  (r, dir) => {
    assertEquals(r, {
      code: 1,
      stderr:
        "compile: DENORT_BIN=/nonexistent/denort: no such file (it must name a denort runtime)\n",
    });
    assertEquals([...Deno.readDirSync(dir)].length, 0);
  },
);
