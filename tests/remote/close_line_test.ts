// The remote's close line: what formatCloseLine writes, parseCloseLine
// reads back, whatever the cause says.

import { assertEquals } from "@std/assert";
import {
  type ClosedDevice,
  formatCloseLine,
  parseCloseLine,
} from "../../lib/remote/close_line.ts";

const DEVICE: ClosedDevice = {
  id: "dev.1",
  counters: { asserts: 3, deasserts: 2, resamples: 5, reasserts: 1 },
  refusals: 7,
};

Deno.test("close line: round trip, with or without the log prefix", () => {
  for (
    const why of [
      "peer closed the connection",
      "closed: PCI_CFGREAD: size: 13, expected 12",
      "closed: device error: Error: boom\n    at Object.read (file:///x.ts:1:2); odd",
    ]
  ) {
    const line = formatCloseLine(DEVICE, why);
    assertEquals(parseCloseLine(line), DEVICE, line);
    assertEquals(parseCloseLine(`iohub remote: ${line}\n`), DEVICE, line);
  }
});

Deno.test("close line: other lines are not close lines", () => {
  assertEquals(parseCloseLine("iohub remote: dev: peer connected on /x"), null);
  assertEquals(
    parseCloseLine("iohub remote: dev: refused: BAR_READ: ..."),
    null,
  );
});
