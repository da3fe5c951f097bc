// The logger: which severities each verbosity writes, with its prefix, and
// the flag that passes a verbosity on to a child.

import { assertEquals } from "@std/assert";
import {
  logSink,
  type Severity,
  shows,
  type Verbosity,
  verbosityFlags,
} from "../lib/log.ts";

Deno.test("log: quiet writes errors, normal adds info, verbose adds details", () => {
  const written = (v: Verbosity): string[] => {
    const lines: string[] = [];
    const sink = logSink("p: ", v, (l) => lines.push(l));
    for (const s of ["error", "info", "detail"] as Severity[]) sink(s, s);
    return lines;
  };
  assertEquals(written("quiet"), ["p: error"]);
  assertEquals(written("normal"), ["p: error", "p: info"]);
  assertEquals(written("verbose"), ["p: error", "p: info", "p: detail"]);
  assertEquals(shows("quiet", "info"), false);
});

Deno.test("log: a verbosity is passed on as --quiet, nothing or --verbose", () => {
  assertEquals(verbosityFlags("quiet"), ["--quiet"]);
  assertEquals(verbosityFlags("normal"), []);
  assertEquals(verbosityFlags("verbose"), ["--verbose"]);
});
