// `iohub demo` as the README runs it: QEMU with the demo guest and our
// remote, the summary, and (without KVM) our own proxy's interrupt path.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { EXIT } from "../../lib/qemu/outcome.ts";
import {
  iohub,
  iohubOk,
  iohubWithEnv,
  MAIN,
  NO_QEMU,
  NO_QEMU_MESSAGE,
} from "./cli_run.ts";
import { kvmUnavailableReason } from "../../lib/kvm/mod.ts";
import { haveBinutils, haveKvm, haveQemu } from "../requirements.ts";
import { gone } from "../process_gone.ts";

const ready = haveQemu() && haveBinutils();

Deno.test({
  name:
    "demo: QEMU, the guest and our remote; every check the accelerator allows passes",
  ignore: !ready,
  fn: async () => {
    const kvm = kvmUnavailableReason() === null && haveKvm();
    const out = await iohubOk("demo", "--timeout", "60");
    assertMatch(out, /devices found on the PCI bus +1\n/);
    assertMatch(out, /DMA device -> guest RAM +ok\n/);
    assertMatch(out, /DMA guest RAM -> device +ok\n/);
    assertMatch(out, /system reset -> DEVICE_RESET +ok\n/);
    assertMatch(out, /remote IOHUB, testdev0: asserts=[1-9]\d* /);
    if (kvm) {
      assertMatch(out, /-accel kvm\)/);
      assertMatch(out, /interrupts via BAR0 \(MMIO\) +16\/16 delivered/);
      assertMatch(out, /interrupts via BAR1 \(port I\/O\) +16\/16 delivered/);
      assertMatch(out, /cycles per interrupt \(rdtsc\) +[1-9]\d*\n/);
      assertMatch(out, /guest status +ok /);
    } else {
      assertMatch(out, /iohub demo: no KVM here \(open \/dev\/kvm: /);
      assertMatch(out, /-accel tcg\)/);
      assertMatch(out, /interrupts via BAR0 \(MMIO\) +0\/16 delivered/);
      assertMatch(
        out,
        /1000\/1000 interrupts from the TypeScript device read from its irqfd/,
      );
      assertMatch(
        out,
        /re-asserted through the resamplefd; after IRQ_ACK \+ EOI: quiet/,
      );
      // Each EOI is seen before the next raise: only the held one re-asserts.
      assertMatch(
        out,
        /sink0: peer closed the connection; INTx asserts=1001 deasserts=1001 resamples=\d+ reasserts=1;/,
      );
    }
  },
});

Deno.test({
  name: "demo: --accel tcg is honoured even where KVM works",
  ignore: !ready,
  fn: async () => {
    const out = await iohubOk("demo", "--accel", "tcg");
    assertMatch(out, /-accel tcg\)/);
    assert(!out.includes("no KVM here"), out);
    assertMatch(out, /interrupts via BAR1 \(port I\/O\) +0\/16 delivered/);
  },
});

Deno.test({
  name: "demo --device edu: the edu guest passes as the accelerator allows",
  ignore: !ready,
  fn: async () => {
    const kvm = kvmUnavailableReason() === null && haveKvm();
    const out = await iohubOk("demo", "--device", "edu", "--timeout", "60");
    assertMatch(out, /assembling the guest \(guest\/edu\/\*\.S\)/);
    assertMatch(out, /edu devices on the PCI bus +1\n/);
    assertMatch(out, /ID register 0x010000ed +ok\n/);
    assertMatch(out, /liveness \(inverts\) +ok\n/);
    assertMatch(out, /10! from the factorial unit +3628800\n/);
    assertMatch(out, /DMA 4 KiB RAM -> edu -> RAM +ok\n/);
    assertMatch(out, /remote IOHUB, edu0: asserts=[1-9]\d* /);
    assertMatch(out, /guest status +ok /);
    const how = kvm ? "irq" : "polled";
    assertMatch(out, new RegExp(`factorial completion +${how}\n`));
    assertMatch(out, new RegExp(`DMA completions +${how}\n`));
  },
});

Deno.test("demo: bad arguments are one line and exit 2", async () => {
  for (
    const [args, msg] of [
      [["--accel", "xen"], "iohub: demo: --accel xen: expected kvm or tcg"],
      [
        ["--device", "e1000"],
        "iohub: demo: --device e1000: expected testdev or edu",
      ],
      [["--timeout", "0"], "iohub: demo: --timeout 0: not a number of seconds"],
      [
        ["--bogus"],
        "iohub: demo: unknown argument '--bogus' (see 'iohub demo --help')",
      ],
    ] as const
  ) {
    const r = await iohub("demo", ...args);
    assertEquals(r.code, 2, r.stderr);
    assertEquals(r.stderr.trim(), msg);
  }
});

Deno.test("demo: a missing QEMU is one line and launch's exit 3", async () => {
  const r = await iohub("demo", "--qemu", NO_QEMU, "--accel", "tcg");
  assertEquals(r.code, EXIT.QEMU);
  assertEquals(r.stderr, `iohub: demo: ${NO_QEMU_MESSAGE}\n`);
  // $IOHUB_QEMU names it too, as for launch.
  const env = await iohubWithEnv({ IOHUB_QEMU: NO_QEMU }, [
    "demo",
    "--accel",
    "tcg",
  ]);
  assertEquals(env.code, EXIT.QEMU);
  assertEquals(env.stderr, `iohub: demo: ${NO_QEMU_MESSAGE}\n`);
});

Deno.test({
  name: "demo: --quiet prints the result only, --verbose the connections too",
  ignore: !ready,
  fn: async (t) => {
    await t.step("--quiet", async () => {
      const out = await iohubOk("demo", "--accel", "tcg", "--quiet");
      assertMatch(out, /^\niohub demo result:\n/);
      for (const chatter of ["guest |", "remote|", "assembling", "QEMU pid"]) {
        assert(!out.includes(chatter), out);
      }
      assertMatch(out, /system reset -> DEVICE_RESET +ok\n/);
      assertMatch(out, /remote IOHUB, testdev0: asserts=[1-9]\d* /);
    });
    await t.step("--verbose", async () => {
      const out = await iohubOk("demo", "--accel", "tcg", "--verbose");
      assertMatch(
        out,
        /remote\| iohub remote: testdev0: serving on fd \d+\n/,
      );
    });
  },
});

Deno.test({
  name:
    "demo: SIGTERM while the guest runs stops QEMU and the remote, exit 143",
  ignore: !ready,
  fn: async () => {
    await using demo = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "demo", "--accel", "tcg", "--timeout", "60"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(demo.stderr).text();
    const reader = demo.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    let pids: RegExpMatchArray | null = null;
    while (pids === null) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
      pids = out.match(/QEMU pid (\d+) .*iohub remote pid (\d+)/);
    }
    assert(pids !== null, out);
    demo.kill("SIGTERM");
    while (!(await reader.read()).done);
    const { code } = await demo.status;
    const err = await stderr;
    assertEquals(code, EXIT.SIGTERM, err);
    assertMatch(err, /interrupted by SIGTERM; stopped QEMU and the remote\n/);
    assert(gone(Number(pids[1])), "QEMU stopped");
    assert(gone(Number(pids[2])), "the remote stopped");
  },
});

Deno.test({
  name:
    "demo: SIGINT while the guest is assembled or after QEMU's run ends the demo, exit 130",
  ignore: !ready,
  fn: async (t) => {
    // Phases: the first line (assembling the guest), and the line that
    // opens the user-space interrupt phase under TCG.
    for (
      const line of [
        "assembling the guest",
        "interrupts through our own proxy",
      ]
    ) {
      await t.step(line, async () => {
        await using demo = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", MAIN, "demo", "--accel", "tcg"],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const stderr = new Response(demo.stderr).text();
        const reader = demo.stdout.pipeThrough(new TextDecoderStream())
          .getReader();
        let out = "";
        while (!out.includes(line)) {
          const { value, done } = await reader.read();
          if (done) break;
          out += value;
        }
        assert(out.includes(line), out);
        demo.kill("SIGINT");
        while (!(await reader.read()).done);
        const { code } = await demo.status;
        const err = await stderr;
        assertEquals(code, EXIT.SIGINT, err);
        assertEquals(err, "iohub: demo: SIGINT\n");
      });
    }
  },
});
