// The parser the demo and the guest tests read a guest's result with.

import { assertEquals } from "@std/assert";
import { parseGuestResult } from "../../lib/guest/result.ts";

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
