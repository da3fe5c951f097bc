// `iohub launch --quiet/--verbose`: parsed into the run's verbosity, handed
// on to the remote it starts, and a quiet run that passes says nothing.

import {
  assert,
  assertEquals,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { parseLaunchArgs } from "../../lib/cli/launch.ts";
import { FLOPPY_SIZE } from "../../lib/guest/boot_image.ts";
import { buildGuest } from "../../lib/guest/build.ts";
import { remoteArguments } from "../../lib/qemu/command_line.ts";
import { splitDeviceValue } from "../../lib/pci/devices/options.ts";
import { haveBinutils, haveQemu } from "../requirements.ts";
import { withTempDir } from "../temp_dir.ts";
import { iohub } from "./cli_run.ts";

Deno.test("launch: --quiet and --verbose reach the remote's command line", () => {
  const cases: [string[], string[]][] = [
    [[], []],
    [["--quiet"], ["--quiet"]],
    [["--verbose"], ["--verbose"]],
  ];
  for (const [flags, passed] of cases) {
    const { options } = parseLaunchArgs(flags);
    assertEquals(remoteArguments(options, options.devices!, [7], 9), [
      "--device",
      "testdev,fd=7,id=testdev0",
      ...passed,
      "--ready-fd",
      "9",
    ]);
  }
});

Deno.test("launch: paths that start with '-' reach the remote as values, not options", () => {
  const { options } = parseLaunchArgs([
    "--trace=-t.jsonl",
    "--control=--ctl",
    "--sandbox",
    "--allow-path=-data",
  ]);
  assertEquals(remoteArguments(options, options.devices!, [7], 9), [
    "--device",
    "testdev,fd=7,id=testdev0",
    "--trace=-t.jsonl",
    "--control=--ctl",
    "--sandbox",
    "--allow-path=-data",
    "--ready-fd",
    "9",
  ]);
});

Deno.test({
  name: "launch --quiet: a run that passes prints nothing on stderr",
  ignore: !(haveQemu() && haveBinutils()),
  async fn(): Promise<void> {
    await withTempDir("iohub-launch-verbosity-", async (dir) => {
      const bin = await Deno.readFile(
        await buildGuest(
          new URL("../qemu/fixtures/launch_exit.S", import.meta.url).pathname,
          { origin: 0x7c00, symbols: { EXIT_CODE: 0 } },
        ),
      );
      const image = new Uint8Array(FLOPPY_SIZE);
      image.set(bin);
      const path = `${dir}/pass.img`;
      Deno.writeFileSync(path, image);
      const args = ["launch", "--accel", "tcg", "--guest", path];
      const quiet = await iohub(...args, "--quiet", "--timeout", "60");
      assertEquals(quiet.code, 0, quiet.stderr);
      assertEquals(quiet.stderr, "");
      const normal = await iohub(...args, "--timeout", "60");
      assertEquals(normal.code, 0, normal.stderr);
      assertStringIncludes(normal.stderr, "iohub: started QEMU (pid ");
    });
  },
});

Deno.test({
  name:
    "launch --quiet: a run stopped on --timeout is its one line, without QEMU's 'terminating on signal'",
  ignore: !haveQemu(),
  async fn(): Promise<void> {
    const r = await iohub(
      "launch",
      "--accel",
      "tcg",
      "--quiet",
      "--timeout",
      "1",
    );
    assertEquals(r.code, 6, r.stderr);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert(!r.stderr.includes("terminating on signal"), r.stderr);
  },
});

Deno.test("launch: a device module's options reach the remote; one that would read as iohub's is refused", () => {
  const mod = { type: "./dev.ts", id: "a" };
  assertEquals(
    remoteArguments(
      {},
      [{ ...mod, params: { rate: "5", mode: "x=y" } }],
      [7],
      9,
    ),
    ["--device", "./dev.ts,fd=7,id=a,rate=5,mode=x=y", "--ready-fd", "9"],
  );
  // Commas in the path and in values are doubled, and come back whole.
  const quoted = remoteArguments(
    {},
    [{ type: "./a,b=c.ts", id: "a", params: { list: "1,socket=/p" } }],
    [7],
    9,
  )[1];
  assertEquals(quoted, "./a,,b=c.ts,fd=7,id=a,list=1,,socket=/p");
  assertEquals(splitDeviceValue(quoted), {
    type: "./a,b=c.ts",
    options: ["fd=7", "id=a", "list=1,socket=/p"],
  });
  const bad: Record<string, string>[] = [
    { fd: "3" },
    { "my-key": "1" },
  ];
  for (const params of bad) {
    assertThrows(
      () => remoteArguments({}, [{ ...mod, params }], [7], 9),
      RangeError,
      "device a: ",
    );
  }
  assertThrows(
    () =>
      remoteArguments(
        {},
        [{ type: "testdev", id: "t", params: { rate: "1" } }],
        [
          7,
        ],
        9,
      ),
    RangeError,
  );
});
