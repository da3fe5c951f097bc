// The README's tutorial device, loaded by path behind `iohub launch` with
// real QEMU: its timer pulses INTx, counted by the remote's IOHUB. Under
// TCG QEMU's proxy carries no interrupt to the guest, so the remote's
// counters are what shows the pulses.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { EXIT } from "../../lib/qemu/outcome.ts";
import { iohub } from "../cli/cli_run.ts";
import { haveQemu } from "../requirements.ts";

Deno.test({
  name:
    "examples/blinker.ts: loaded by path behind iohub launch, its timer pulses INTx",
  ignore: !haveQemu(),
  async fn(): Promise<void> {
    const r = await iohub(
      "launch",
      "--device",
      "./examples/blinker.ts,id=blink",
      "--accel",
      "tcg",
      "--timeout",
      "2",
    );
    assertEquals(r.code, EXIT.TIMEOUT, r.stderr);
    const m = /blink: .*INTx asserts=(\d+) deasserts=(\d+)/.exec(r.stderr);
    assert(m !== null, r.stderr);
    // 100 ms pulses over about 2 s, minus QEMU's start-up.
    assert(Number(m[1]) >= 5, `only ${m[1]} pulses: ${r.stderr}`);
    assertMatch(r.stderr, /timed out after 2 s/);
  },
});
