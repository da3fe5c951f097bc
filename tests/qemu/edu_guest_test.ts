// The edu guest (guest/edu/edu.S) through QEMU 7.2's x-pci-proxy-dev and
// our remote serving edu: SeaBIOS boots it, it finds edu on the PCI bus,
// checks ID and liveness, computes 10! and moves 4 KiB through the DMA
// buffer both ways. Under TCG (no interrupts through QEMU's proxy) it polls
// the completions and says so; under KVM it must take the interrupts.

import { assertEquals } from "@std/assert";
import { buildEduImage } from "../../lib/guest/boot_image.ts";
import type { PirqCounters } from "../../lib/remote/iohub.ts";
import {
  assertGuestEnd,
  assertInterruptsTaken,
  guestRun,
  guestTest,
  lineCounts,
} from "./guest_run.ts";

const PASSED = {
  device: "edu",
  devices: "1",
  id: "ok",
  liveness: "ok",
  factorial: "3628800",
  dma: "ok",
  status: "ok",
};

/**
 * Runs the edu guest under `accel` (about 2 s under TCG here, two 100 ms
 * DMAs included); asserts every check passed with both completions seen
 * as `how` ("polled" or "irq"); returns the counters of edu's line.
 */
async function eduPasses(
  accel: "kvm" | "tcg",
  how: "polled" | "irq",
): Promise<PirqCounters> {
  const guest = await buildEduImage();
  const { outcome, result, counters } = await guestRun(accel, guest, [
    { type: "edu", id: "edu0" },
  ]);
  assertEquals(result, { ...PASSED, fact_irq: how, dma_irq: how });
  assertGuestEnd(outcome, "passed");
  return counters;
}

guestTest(
  "tcg",
  "edu guest (tcg): every check passes, completions polled",
  async () => {
    const counters = await eduPasses("tcg", "polled");
    // edu raised INTx once per completion (factorial, DMA in, DMA out); the
    // guest's own acknowledgement lowered it each time; no EOI resampled.
    assertEquals(lineCounts(counters), [3, 3, 0]);
  },
);

guestTest(
  "kvm",
  "edu guest (kvm): every check passes, interrupts taken",
  async () => {
    assertInterruptsTaken(await eduPasses("kvm", "irq"), 3);
  },
);
