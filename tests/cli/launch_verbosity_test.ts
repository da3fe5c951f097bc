// `iohub launch --quiet/--verbose`: parsed into the run's verbosity and
// handed on to the remote it starts.

import { assertEquals } from "@std/assert";
import { parseLaunchArgs } from "../../lib/cli/launch.ts";
import { remoteArguments } from "../../lib/qemu/launch.ts";

Deno.test("launch: --quiet and --verbose reach the remote's command line", () => {
  const cases: [string[], string[]][] = [
    [[], []],
    [["--quiet"], ["--quiet"]],
    [["--verbose"], ["--verbose"]],
  ];
  for (const [flags, passed] of cases) {
    const { options } = parseLaunchArgs(flags);
    assertEquals(remoteArguments(options, options.devices!, [7]), [
      "--device",
      "testdev,fd=7,id=testdev0",
      ...passed,
    ]);
  }
});
