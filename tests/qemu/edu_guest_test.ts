// The edu guest (guest/edu/edu.S) through QEMU 7.2's x-pci-proxy-dev and
// our remote serving edu: SeaBIOS boots it, it finds edu on the PCI bus,
// checks ID and liveness, computes 10! and moves 4 KiB through the DMA
// buffer both ways. Under TCG (no interrupts through QEMU's proxy) it polls
// the completions and says so; under KVM it must take the interrupts.

import { assert, assertEquals } from "@std/assert";
import { buildEduImage } from "../../lib/guest/boot_image.ts";
import { type GuestResult, parseGuestResult } from "../../lib/guest/result.ts";
import { launch } from "../../lib/qemu/launch.ts";
import type { LaunchOutcome } from "../../lib/qemu/outcome.ts";
import type { PirqCounters } from "../../lib/remote/iohub.ts";
import { parseCloseLine } from "../../lib/remote/close_line.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { haveBinutils, haveKvm, haveQemu, QEMU } from "../requirements.ts";

const qemuOk = haveQemu();
const guestsOk = qemuOk && haveBinutils();
const kvmOk = guestsOk && haveKvm();

// Measured under TCG here: about 2 s (two 100 ms DMAs included).
const TIMEOUT_MS = 60_000;

interface EduRun {
  outcome: LaunchOutcome;
  result: GuestResult;
  counters: PirqCounters;
}

async function eduRun(accel: "kvm" | "tcg"): Promise<EduRun> {
  const serial: string[] = [];
  let outcome: LaunchOutcome | null = null;
  const guest = await buildEduImage();
  await assertNoFdLeak(async () => {
    outcome = await launch({
      qemu: QEMU,
      accel,
      guest,
      devices: [{ type: "edu", id: "edu0" }],
      timeoutMs: TIMEOUT_MS,
      onSerialLine: (line) => serial.push(line),
    });
  });
  const out = outcome!;
  const context = `serial:\n${serial.join("\n")}\nremote:\n${
    out.remoteLines.join("\n")
  }\n${out.message}`;
  const results = serial.map(parseGuestResult).filter((r) => r !== null);
  assertEquals(results.length, 1, `one IOHUB-RESULT line\n${context}`);
  const counters = out.remoteLines.map(parseCloseLine)
    .filter((c) => c !== null);
  assertEquals(counters.length, 1, `one remote close line\n${context}`);
  return {
    outcome: out,
    result: results[0]!,
    counters: counters[0]!.counters,
  };
}

const PASSED = {
  device: "edu",
  devices: "1",
  id: "ok",
  liveness: "ok",
  factorial: "3628800",
  dma: "ok",
  status: "ok",
};

Deno.test({
  name: "edu guest (tcg): every check passes, completions polled",
  ignore: !guestsOk,
  async fn(): Promise<void> {
    const { outcome, result, counters } = await eduRun("tcg");
    assertEquals(result, { ...PASSED, fact_irq: "polled", dma_irq: "polled" });
    assertEquals(outcome.end, "guest-passed");
    assertEquals(outcome.guestCode, 0);
    // edu raised INTx once per completion (factorial, DMA in, DMA out); the
    // guest's own acknowledgement lowered it each time; no EOI resampled.
    assertEquals(
      {
        asserts: counters.asserts,
        deasserts: counters.deasserts,
        resamples: counters.resamples,
      },
      { asserts: 3, deasserts: 3, resamples: 0 },
    );
  },
});

Deno.test({
  name: "edu guest (kvm): every check passes, interrupts taken",
  ignore: !kvmOk,
  async fn(): Promise<void> {
    const { outcome, result, counters } = await eduRun("kvm");
    assertEquals(result, { ...PASSED, fact_irq: "irq", dma_irq: "irq" });
    assertEquals(outcome.end, "guest-passed");
    assert(counters.asserts >= 3, JSON.stringify(counters));
    assert(counters.resamples >= 3, JSON.stringify(counters));
  },
});
