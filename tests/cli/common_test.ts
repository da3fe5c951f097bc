// The one-line error printer: Deno's permission refusals become the flag to
// add, everything else its message; and --quiet/--verbose parsing.

import { assertEquals, assertThrows } from "@std/assert";
import {
  describeError,
  exitStatusOf,
  UsageError,
  verbosityOf,
} from "../../lib/cli/common.ts";

Deno.test("describeError: a refused permission names the flag", () => {
  assertEquals(
    describeError(
      new Deno.errors.NotCapable(
        'Requires read access to "/x", run again with the --allow-read flag',
      ),
    ),
    "needs --allow-read for /x (run through bin/iohub)",
  );
  // Deno refuses an import with a TypeError in the same words.
  assertEquals(
    describeError(
      new TypeError(
        'Requires import access to "example.com:443", run again with the --allow-import flag',
      ),
    ),
    "needs --allow-import for example.com:443 (run through bin/iohub)",
  );
  assertEquals(describeError(new Error("bind /x: ENOENT")), "bind /x: ENOENT");
  assertEquals(describeError("thrown text"), "thrown text");
});

Deno.test("verbosityOf: --quiet, --verbose, neither; both is a usage error", () => {
  assertEquals(verbosityOf({}, "remote"), "normal");
  assertEquals(verbosityOf({ quiet: true }, "remote"), "quiet");
  assertEquals(verbosityOf({ verbose: true }, "remote"), "verbose");
  assertThrows(
    () => verbosityOf({ quiet: true, verbose: true }, "remote"),
    UsageError,
    "remote: --quiet and --verbose exclude each other",
  );
});

Deno.test("exitStatusOf: 2 for usage, 1 otherwise, 1 for a refused permission", () => {
  assertEquals(exitStatusOf(new UsageError("remote: bad")), 2);
  assertEquals(exitStatusOf(new Error("bind /x: ENOENT")), 1);
  assertEquals(exitStatusOf("thrown text"), 1);
  // A loader may report a refused read as a bad --device: still not usage.
  assertEquals(
    exitStatusOf(
      new UsageError(
        'cannot load /m.ts: Requires read access to "/m.ts", run again with the --allow-read flag',
      ),
    ),
    1,
  );
});
