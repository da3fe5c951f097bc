// `deno task compile` (scripts/compile.sh): a binary that answers as a
// compiled iohub, or, where Deno's denort runtime is out of reach or
// DENORT_BIN is not one, a single line saying what to do and exit 1.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { haveBinutils } from "../requirements.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

async function compile(
  output: string,
  env: Record<string, string> = {},
): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command("bash", {
    args: ["scripts/compile.sh", output],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "null",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test({
  name: "compile: a compiled iohub, or one line on how to get denort",
  ignore: !haveBinutils(),
  async fn(): Promise<void> {
    const dir = Deno.makeTempDirSync();
    try {
      const output = `${dir}/iohub`;
      const r = await compile(output);
      if (r.code === 0) {
        const v = await new Deno.Command(output, { args: ["--version"] })
          .output();
        assertStringIncludes(
          new TextDecoder().decode(v.stdout),
          ", compiled)",
        );
      } else {
        assertEquals(r.code, 1);
        assertEquals(r.stderr.split("\n").length, 2, r.stderr);
        assertStringIncludes(
          r.stderr,
          "compile: deno compile could not download its denort runtime",
        );
        assertStringIncludes(r.stderr, "set DENORT_BIN to a denort");
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "compile: DENORT_BIN pointing at deno itself is refused in one line",
  ignore: !haveBinutils(),
  async fn(): Promise<void> {
    const dir = Deno.makeTempDirSync();
    try {
      const output = `${dir}/iohub`;
      const r = await compile(output, { DENORT_BIN: Deno.execPath() });
      assertEquals(r, {
        code: 1,
        stderr:
          `compile: the binary built does not run iohub: DENORT_BIN=${Deno.execPath()} must be a denort runtime, not deno itself\n`,
      });
      assert(
        [...Deno.readDirSync(dir)].length === 0,
        "the useless binary is removed",
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
