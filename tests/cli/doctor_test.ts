// `iohub doctor` as a user runs it: every check passes on this machine
// (KVM, QEMU, binutils, a real interrupt path), a broken QEMU fails its
// line without stopping the others, and bad arguments exit 2.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { iohub, iohubOk, iohubWithEnv, NO_QEMU } from "./cli_run.ts";
import { kvmUnavailableReason } from "../../lib/kvm/mod.ts";
import { haveBinutils, haveKvm, haveQemu } from "../requirements.ts";

const ready = haveKvm() && haveQemu() && haveBinutils();

Deno.test({
  name: "doctor: every check passes and the round trip is measured",
  ignore: !ready,
  fn: async () => {
    const out = await iohubOk("doctor", "--interrupts", "100");
    const lines = out.trim().split("\n");
    assertEquals(lines.length, 7, out);
    assert(lines.every((l) => l.startsWith("pass  ")), out);
    assertMatch(
      lines[6],
      /interrupt path +100\/100 interrupts .* [\d.]+ us per round trip/,
    );
  },
});

Deno.test({
  name: "doctor: a missing QEMU fails its line and the exit status only",
  ignore: !(haveKvm() && haveBinutils()),
  fn: async () => {
    const r = await iohub(
      "doctor",
      "--qemu",
      "/nonexistent/qemu",
      "--interrupts",
      "10",
    );
    assertEquals(r.code, 1);
    assertMatch(r.stdout, /FAIL {2}QEMU +\/nonexistent\/qemu not found/);
    assertMatch(r.stdout, /pass {2}interrupt path +10\/10/);
  },
});

Deno.test({
  name:
    "doctor: without KVM the KVM line says why; the interrupt path is not run",
  ignore: kvmUnavailableReason() === null,
  fn: async () => {
    const r = await iohub("doctor");
    assertEquals(r.code, 1);
    const lines = r.stdout.trim().split("\n");
    assertMatch(
      lines[0],
      /^FAIL {2}\/dev\/kvm +open \/dev\/kvm: E[A-Z]+ \(.+\)$/,
    );
    assertEquals(
      lines.at(-1),
      "FAIL  interrupt path          not run: the /dev/kvm check failed",
    );
    assert(!lines.some((l) => l.includes("KVM_CAP")), r.stdout);
    // What can be told without KVM is, but it does not make the run pass.
    assertMatch(
      lines.at(-2)!,
      /^pass {2}irqfd path, no KVM +1000\/1000 interrupts from a real iohub remote read from the irqfd in user space, [\d.]+ us per round trip; a level held across EOI was re-asserted \(informational\)$/,
    );
  },
});

Deno.test("doctor: $IOHUB_QEMU names the QEMU it checks, as for launch", async () => {
  const r = await iohubWithEnv({ IOHUB_QEMU: NO_QEMU }, [
    "doctor",
    "--interrupts",
    "10",
  ]);
  assertEquals(r.code, 1);
  assertMatch(r.stdout, /FAIL {2}QEMU +\/nonexistent\/qemu not found/);
});

Deno.test("doctor: bad arguments are one line and exit 2", async () => {
  const r = await iohub("doctor", "--interrupts", "0");
  assertEquals(r.code, 2);
  assertEquals(
    r.stderr.trim(),
    "iohub: doctor: --interrupts 0: expected 1..65535",
  );
  const u = await iohub("doctor", "--bogus");
  assertEquals(u.code, 2);
  assertMatch(u.stderr, /unknown argument '--bogus'/);
});
