// Boots a guest image in QEMU against our remote (launch()) and collects
// what both sides said: the guest's IOHUB-RESULT line and the remote's close
// lines, with the whole output at hand for assertion messages.

import { assert, assertEquals } from "@std/assert";
import { type GuestResult, parseGuestResult } from "../../lib/guest/result.ts";
import type { LaunchDevice } from "../../lib/qemu/command_line.ts";
import { launch } from "../../lib/qemu/launch.ts";
import type { LaunchOutcome } from "../../lib/qemu/outcome.ts";
import {
  type ClosedDevice,
  parseCloseLine,
} from "../../lib/remote/close_line.ts";
import type { PirqCounters } from "../../lib/remote/iohub.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { haveBinutils, haveKvm, haveQemu, QEMU } from "../requirements.ts";

/** Whether guests can be built and run here (under TCG at least). */
const GUESTS_OK: boolean = haveQemu() && haveBinutils();
/** Whether guests can run here under KVM as well. */
const KVM_GUESTS_OK: boolean = GUESTS_OK && haveKvm();

/**
 * How long a guest run may take by default. The guests here finish in 1 to
 * 2 s under TCG (SeaBIOS boots included); the margin is for loaded CI
 * machines.
 */
const GUEST_TIMEOUT_MS = 60_000;

/**
 * A test that runs a guest under `accel`, ignored where that cannot run
 * here (see GUESTS_OK and KVM_GUESTS_OK).
 */
export function guestTest(
  accel: "kvm" | "tcg",
  name: string,
  fn: () => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: !(accel === "kvm" ? KVM_GUESTS_OK : GUESTS_OK),
    fn,
  });
}

/** What one run of a guest against our remote said. */
export interface GuestRun {
  /** How launch() ended. */
  outcome: LaunchOutcome;
  /** The guest's serial lines. */
  serial: string[];
  /** The guest's one IOHUB-RESULT line. */
  result: GuestResult;
  /** The remote's close lines, in the order it closed the devices. */
  closed: ClosedDevice[];
  /** The first device's close line. */
  counters: PirqCounters;
  /** Serial and remote output and launch's message, for failures. */
  context: string;
}

/**
 * Runs `guest` (an image path) under `accel` with our remote serving
 * `devices`, for at most `timeoutMs`; asserts that no fd leaked, the guest
 * printed exactly one IOHUB-RESULT line and the remote one close line per
 * device.
 */
export async function guestRun(
  accel: "kvm" | "tcg",
  guest: string,
  devices: LaunchDevice[],
  timeoutMs = GUEST_TIMEOUT_MS,
): Promise<GuestRun> {
  const serial: string[] = [];
  let outcome: LaunchOutcome | null = null;
  await assertNoFdLeak(async () => {
    outcome = await launch({
      qemu: QEMU,
      accel,
      guest,
      devices,
      timeoutMs,
      onSerialLine: (line) => serial.push(line),
    });
  });
  const out = outcome!;
  const context = `serial:\n${serial.join("\n")}\nremote:\n${
    out.remoteLines.join("\n")
  }\n${out.message}`;
  const results = serial.map(parseGuestResult).filter((r) => r !== null);
  assertEquals(results.length, 1, `one IOHUB-RESULT line\n${context}`);
  const closed = out.remoteLines.map(parseCloseLine).filter((c) => c !== null);
  assertEquals(
    closed.map((c) => c.id).sort(),
    devices.map((d) => d.id).sort(),
    `one remote close line per device\n${context}`,
  );
  return {
    outcome: out,
    serial,
    result: results[0]!,
    closed,
    counters: closed.find((c) => c.id === devices[0].id)!.counters,
    context,
  };
}

/**
 * How often a device's line rose, fell and was resampled, as [asserts,
 * deasserts, resamples]: the counts a run pins down exactly where its
 * guest's interrupts follow one plan.
 */
export function lineCounts(c: PirqCounters): [number, number, number] {
  return [c.asserts, c.deasserts, c.resamples];
}

/**
 * Asserts that a device's line was raised at least `n` times and each
 * raise's EOI resampled: the guest took `n` interrupts through KVM.
 */
export function assertInterruptsTaken(c: PirqCounters, n: number): void {
  assert(c.asserts >= n, JSON.stringify(c));
  assert(c.resamples >= n, JSON.stringify(c));
}

/**
 * Asserts the run ended by the guest's own verdict through isa-debug-exit:
 * `passed` (exit value 0) or `failed` (1).
 */
export function assertGuestEnd(
  outcome: LaunchOutcome,
  verdict: "passed" | "failed",
): void {
  assertEquals(
    [outcome.end, outcome.guestCode],
    [`guest-${verdict}`, verdict === "passed" ? 0 : 1],
    outcome.message,
  );
}
