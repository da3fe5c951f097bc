// The parsers the demo reads its summary with.

import { assertEquals } from "@std/assert";
import { parseGuestResult, parseIntxCounters } from "../../lib/guest/result.ts";

Deno.test("guest result: key=value fields of the IOHUB-RESULT line", () => {
  assertEquals(
    parseGuestResult(
      "IOHUB-RESULT devices=1 irq_mmio=100/100 reset=ok status=ok\r",
    ),
    { devices: "1", irq_mmio: "100/100", reset: "ok", status: "ok" },
  );
  assertEquals(parseGuestResult("iohub-guest: found 1 device"), null);
  assertEquals(parseGuestResult("IOHUB-RESULT"), null);
});

Deno.test("guest result: the remote's close line counters", () => {
  assertEquals(
    parseIntxCounters(
      "iohub remote: testdev0: peer closed the connection; INTx asserts=3 deasserts=2 resamples=5 reasserts=1; refused accesses=0",
    ),
    { id: "testdev0", asserts: 3, deasserts: 2, resamples: 5, reasserts: 1 },
  );
  assertEquals(
    parseIntxCounters(
      "iohub remote: dev.1: closed: PCI_CFGREAD: size: bad; INTx asserts=0 deasserts=0 resamples=0 reasserts=0; refused accesses=2",
    )?.id,
    "dev.1",
  );
  assertEquals(parseIntxCounters("iohub remote: testdev0: served"), null);
});
