// lib/kvm/ (wrappers, machine, irq guest) on the real /dev/kvm, no remote: ioctl
// numbers and struct layouts against the kernel headers, capabilities, and
// the IOHUB interrupt cycle on the in-kernel PIC driven with plain eventfds
// (irqfd -> guest handler -> EOI -> resamplefd -> re-assert), deregistration,
// the watchdog that keeps a stuck guest from hanging a test, and fd leaks.

import {
  assert,
  assertEquals,
  assertGreater,
  assertLess,
  assertRejects,
  assertThrows,
} from "@std/assert";
import { EventFd, pollReadable, SysError } from "../../ffi/mod.ts";
import {
  kernelHasKvmDevice,
  Kvm,
  KVM_API_VERSION,
  KVM_IOCTL,
  KVM_STRUCT,
  KvmCap,
  KvmExit,
} from "../../lib/kvm/mod.ts";
import {
  createIrqGuestMachine,
  IrqGuestFlag,
  readIrqGuestCounters,
  writeIrqGuestParams,
} from "../../lib/kvm/irq_guest.ts";
import {
  GUEST_LOAD_ADDRESS,
  GUEST_STACK_TOP,
  GuestFailure,
  HarnessPort,
  HarnessTimeout,
} from "../../lib/kvm/machine.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { haveGcc, haveKvm } from "../requirements.ts";
import { withTempDir } from "../temp_dir.ts";
import { GSI, machineTest, sleep, start } from "./guest_machine.ts";

const kvmOk = haveKvm();
const gccOk = haveGcc();

// The table at the end of docs/protocol.md, copied: the derivations must agree.
const PROTOCOL_HEX: Record<string, number> = {
  KVM_GET_API_VERSION: 0xae00,
  KVM_CREATE_VM: 0xae01,
  KVM_CHECK_EXTENSION: 0xae03,
  KVM_GET_VCPU_MMAP_SIZE: 0xae04,
  KVM_CREATE_VCPU: 0xae41,
  KVM_SET_USER_MEMORY_REGION: 0x4020ae46,
  KVM_CREATE_IRQCHIP: 0xae60,
  KVM_IRQFD: 0x4020ae76,
  KVM_RUN: 0xae80,
  KVM_GET_REGS: 0x8090ae81,
  KVM_SET_REGS: 0x4090ae82,
  KVM_GET_SREGS: 0x8138ae83,
  KVM_SET_SREGS: 0x4138ae84,
  KVM_GET_LAPIC: 0x8400ae8e,
  KVM_SET_LAPIC: 0x4400ae8f,
  KVM_SIGNAL_MSI: 0x4020aea5,
};

Deno.test("kvm: ioctl numbers derived with ioc() match docs/protocol.md", () => {
  for (const [name, hex] of Object.entries(PROTOCOL_HEX)) {
    assertEquals(
      KVM_IOCTL[name as keyof typeof KVM_IOCTL],
      BigInt(hex),
      name,
    );
  }
});

async function kernelLayout(): Promise<Map<string, bigint>> {
  return await withTempDir("iohub-kvm-layout-", async (dir) => {
    const exe = `${dir}/kvm_layout`;
    const src = new URL("./kvm_layout.c", import.meta.url).pathname;
    const cc = await new Deno.Command("gcc", {
      args: ["-Wall", "-Werror", "-o", exe, src],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert(cc.success, new TextDecoder().decode(cc.stderr));
    const out = await new Deno.Command(exe, { stdout: "piped" }).output();
    assert(out.success);
    const map = new Map<string, bigint>();
    for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
      if (line === "") continue;
      const [key, value] = line.split(" ");
      map.set(key, BigInt(value));
    }
    return map;
  });
}

Deno.test({
  name: "kvm: struct layouts, ioctls and caps match <linux/kvm.h>",
  ignore: !gccOk,
  async fn(): Promise<void> {
    const c = await kernelLayout();
    const seen = new Set<string>();
    const expect = (key: string, ours: number | bigint): void => {
      assert(c.has(key), `tests/kvm_layout.c does not print ${key}`);
      assertEquals(BigInt(ours), c.get(key), key);
      seen.add(key);
    };
    for (const [struct, fields] of Object.entries(KVM_STRUCT)) {
      for (const [field, value] of Object.entries(fields)) {
        expect(`${struct}.${field}`, value);
      }
    }
    for (const [name, req] of Object.entries(KVM_IOCTL)) {
      expect(`ioctl.${name}`, req);
    }
    for (const [name, cap] of Object.entries(KvmCap)) {
      expect(`cap.${name}`, cap);
    }
    expect("apiVersion", KVM_API_VERSION);
    // And nothing the C program checks is missing on the TypeScript side.
    assertEquals([...c.keys()].filter((k) => !seen.has(k)), []);
  },
});

/** A test on /dev/kvm itself (ignored without it); no fd may leak. */
function kvmTest(name: string, body: () => void): void {
  Deno.test({ name, ignore: !kvmOk, fn: () => assertNoFdLeak(body) });
}

kvmTest("kvm: API version 12; IRQFD and IRQFD_RESAMPLE present", () => {
  using kvm = Kvm.open();
  assertEquals(kvm.apiVersion(), KVM_API_VERSION);
  assertGreater(kvm.checkExtension(KvmCap.IRQCHIP), 0);
  assertGreater(kvm.checkExtension(KvmCap.IRQFD), 0);
  assertGreater(kvm.checkExtension(KvmCap.IRQFD_RESAMPLE), 0);
  assertGreater(kvm.vcpuMmapSize(), 0);
});

Deno.test("kvm: open failure names the path and a hint fitting the kernel", () => {
  const misc = Deno.readTextFileSync("/proc/misc");
  const hasKvm = /^\s*\d+ kvm$/m.test(misc);
  assertEquals(kernelHasKvmDevice(), hasKvm);
  const e = assertThrows(
    () => Kvm.open("/nonexistent/kvm"),
    SysError,
    hasKvm
      ? "open /nonexistent/kvm: ENOENT (No such file or directory; the kernel has KVM but /nonexistent/kvm is missing"
      : "open /nonexistent/kvm: ENOENT (No such file or directory; this kernel offers no KVM (no 'kvm' in /proc/misc)",
  );
  assertEquals(e.code, "ENOENT");
});

kvmTest("kvm: ioctl errors name the ioctl; close is idempotent", () => {
  const kvm = Kvm.open();
  const vm = kvm.createVm();
  vm.createIrqchip();
  // An fd number that is not open, never closed: released below.
  const notOpen = new EventFd(0x7fff_fff0);
  const e = assertThrows(
    () => vm.registerIrqfd(notOpen, 5),
    SysError,
    "KVM_IRQFD: EBADF",
  );
  notOpen.release();
  assertEquals(e.call, "KVM_IRQFD");
  const vcpu = vm.createVcpu(0);
  vcpu.close();
  vcpu.close();
  assertThrows(() => vcpu.getRegs(), SysError, "EBADF");
  vm.close();
  vm.close();
  assertThrows(() => vm.createIrqchip(), SysError, "EBADF");
  kvm.close();
  kvm.close();
  assertThrows(() => kvm.apiVersion(), SysError, "EBADF");
});

machineTest(
  "kvm: irqfd with resample on the in-kernel PIC: deliver, EOI signals resample, re-assert, unregister stops",
  async (m) => {
    const irqfd = new EventFd();
    const resamplefd = new EventFd();
    try {
      m.vm.registerIrqfdWithResample(irqfd, resamplefd, GSI);
      const N = 200;
      writeIrqGuestParams(m, {
        irq: GSI,
        flags: IrqGuestFlag.REPORT,
        count: N,
      });
      const reports: number[] = [];
      let reported = Promise.withResolvers<void>();
      const r = start(m, {
        timeoutMs: 10_000,
        onReport: (v) => {
          reports.push(v);
          reported.resolve();
        },
      });
      await r.ready;
      // Nothing is asserted yet, so nothing is delivered.
      await sleep(20);
      assertEquals(readIrqGuestCounters(m).delivered, 0);
      const t0 = performance.now();
      for (let i = 1; i <= N; i++) {
        irqfd.signal();
        await reported.promise;
        reported = Promise.withResolvers<void>();
        // The handler's EOI lowers the line and KVM signals the
        // resamplefd exactly once per delivery.
        assert(await pollReadable(resamplefd.fd, 2000), `resample ${i}`);
        assertEquals(resamplefd.drain(), 1n);
      }
      const us = (performance.now() - t0) * 1000 / N;
      const done = await r.run;
      console.log(
        `  ${N} irqfd -> handler -> EOI -> resample cycles: ${
          us.toFixed(1)
        } us per cycle`,
      );
      assertEquals(done.status, "done");
      assertEquals(done.value, N);
      assertEquals(reports, Array.from({ length: N }, (_, i) => i + 1));

      // Level semantics: after the EOI nobody re-asserts, so no second
      // delivery comes on its own.
      writeIrqGuestParams(m, {
        irq: GSI,
        flags: IrqGuestFlag.REPORT,
        count: N + 2,
      });
      const r2 = start(m, { timeoutMs: 10_000 });
      await r2.ready;
      irqfd.signal();
      assert(await pollReadable(resamplefd.fd, 2000));
      resamplefd.drain();
      await sleep(50);
      assertEquals(readIrqGuestCounters(m).delivered, N + 1);

      // Deassigned, the irqfd no longer reaches the guest.
      m.vm.unregisterIrqfd(irqfd, GSI);
      irqfd.signal();
      assertEquals(await pollReadable(resamplefd.fd, 100), false);
      assertEquals(readIrqGuestCounters(m).delivered, N + 1);
      m.stop();
      assertEquals((await r2.run).status, "stopped");
      assertEquals(readIrqGuestCounters(m).kicks, 1);
    } finally {
      irqfd.close();
      resamplefd.close();
    }
  },
);

machineTest(
  "kvm: a guest whose interrupt never comes fails in bounded time",
  async (m) => {
    // Waiting with interrupts on (sti; hlt) for an IRQ nobody raises.
    writeIrqGuestParams(m, { irq: GSI, flags: 0, count: 1 });
    let t0 = performance.now();
    await assertRejects(
      () => m.run({ timeoutMs: 150 }),
      HarnessTimeout,
      "guest did not finish within 150 ms",
    );
    assertLess(performance.now() - t0, 1500);
    // Halted with interrupts off: only the NMI gets it out.
    writeIrqGuestParams(m, {
      irq: GSI,
      flags: IrqGuestFlag.CLI_HALT,
      count: 1,
    });
    t0 = performance.now();
    await assertRejects(
      () => m.run({ timeoutMs: 150 }),
      HarnessTimeout,
      "kicked out by the watchdog NMI",
    );
    assertLess(performance.now() - t0, 1500);
    assertEquals(readIrqGuestCounters(m).kicks, 2);
    // A run after a timeout resumes the guest normally.
    writeIrqGuestParams(m, { irq: GSI, flags: 0, count: 0 });
    assertEquals((await m.run({ timeoutMs: 5000 })).status, "done");
  },
);

const TESTDEV_ID = 0x10b10001;

machineTest(
  "kvm: port I/O and MMIO exits reach the handlers; unclaimed ones fail the run",
  async (m) => {
    const seen: string[] = [];
    const id = (data: Uint8Array): void => {
      new DataView(data.buffer, data.byteOffset, 4)
        .setUint32(0, TESTDEV_ID, true);
    };
    // Port I/O: the guest reads the testdev ID through BAR1.
    writeIrqGuestParams(m, {
      irq: GSI,
      flags: IrqGuestFlag.PIO,
      count: 0,
      ioBase: 0xc040,
    });
    let r = await m.run({
      timeoutMs: 5000,
      onIo: (port, size, isWrite, data) => {
        seen.push(`io ${port.toString(16)} ${size} ${isWrite}`);
        id(data);
        return true;
      },
    });
    assertEquals(r.status, "done");
    assertEquals(seen, ["io c040 4 false"]);

    // MMIO: the same through BAR0 below 1 MiB.
    seen.length = 0;
    writeIrqGuestParams(m, {
      irq: GSI,
      flags: IrqGuestFlag.MMIO,
      count: 0,
      mmioBase: 0xd0000,
    });
    r = await m.run({
      timeoutMs: 5000,
      onMmio: (addr, isWrite, data) => {
        seen.push(`mmio ${addr.toString(16)} ${data.length} ${isWrite}`);
        id(data);
        return true;
      },
    });
    assertEquals(r.status, "done");
    assertEquals(seen, ["mmio d0000 4 false"]);

    // A wrong ID makes the guest write FAIL (code 1).
    const e = await assertRejects(
      () =>
        m.run({
          timeoutMs: 5000,
          onMmio: (_addr, _isWrite, data) => {
            data.fill(0);
            return true;
          },
        }),
      GuestFailure,
      "code 1",
    );
    assertEquals(e.code, 1);
    // Nobody claims the access: the run fails naming it.
    await assertRejects(
      () => m.run({ timeoutMs: 5000 }),
      GuestFailure,
      "unclaimed MMIO read at 0xd0000 (4 bytes)",
    );
    // (A fresh machine: this one is stopped in the middle of that read.)
    using m2 = await createIrqGuestMachine();
    writeIrqGuestParams(m2, {
      irq: GSI,
      flags: IrqGuestFlag.PIO,
      count: 0,
      ioBase: 0xc040,
    });
    await assertRejects(
      () => m2.run({ timeoutMs: 5000, onIo: () => false }),
      GuestFailure,
      "unclaimed port read 0xc040 (4 bytes)",
    );
  },
);

machineTest(
  "kvm: synchronous KVM_RUN, exit accessors, regs and sregs",
  (m) => {
    const { vcpu } = m;
    // The harness's real-mode start state.
    const sregs = vcpu.getSregs();
    assertEquals(sregs.segment("cs").base, 0n);
    assertEquals(sregs.segment("cs").selector, 0);
    assertEquals(sregs.segment("ss").limit, 0xffff);
    assertEquals(sregs.cr0 & 1n, 0n, "real mode");
    const regs = vcpu.getRegs();
    assertEquals(regs.get("rip"), BigInt(GUEST_LOAD_ADDRESS));
    assertEquals(regs.get("rsp"), BigInt(GUEST_STACK_TOP));
    regs.set("rbx", 0x1234_5678n);
    vcpu.setRegs(regs);
    assertEquals(vcpu.getRegs().get("rbx"), 0x1234_5678n);

    writeIrqGuestParams(m, {
      irq: GSI,
      flags: IrqGuestFlag.PIO,
      count: 0,
      ioBase: 0xc040,
    });
    // PIC programming stays in the kernel: the first exit is the ID read.
    assertEquals(vcpu.run(), KvmExit.IO);
    assertEquals(
      [vcpu.ioPort, vcpu.ioSize, vcpu.ioIsWrite, vcpu.ioCount],
      [0xc040, 4, false, 1],
    );
    new DataView(vcpu.ioData().buffer, vcpu.ioData().byteOffset, 4)
      .setUint32(0, TESTDEV_ID, true);
    assertEquals(vcpu.run(), KvmExit.IO);
    assertEquals(
      [vcpu.ioPort, vcpu.ioSize, vcpu.ioIsWrite],
      [HarnessPort.READY, 2, true],
    );
    assertEquals(vcpu.run(), KvmExit.IO);
    assertEquals(vcpu.ioPort, HarnessPort.DONE);
    const ip = Number(vcpu.getRegs().get("rip"));
    assert(ip > GUEST_LOAD_ADDRESS && ip < GUEST_STACK_TOP, `ip ${ip}`);
  },
);

machineTest(
  "kvm: irqfd without resample injects one edge per write",
  async (m) => {
    const irqfd = new EventFd();
    try {
      m.vm.registerIrqfd(irqfd, GSI);
      const N = 50;
      writeIrqGuestParams(m, {
        irq: GSI,
        flags: IrqGuestFlag.REPORT | IrqGuestFlag.EDGE,
        count: N,
      });
      let reported = Promise.withResolvers<void>();
      const r = start(m, {
        timeoutMs: 10_000,
        onReport: () => reported.resolve(),
      });
      await r.ready;
      for (let i = 0; i < N; i++) {
        irqfd.signal();
        await reported.promise;
        reported = Promise.withResolvers<void>();
      }
      assertEquals((await r.run).value, N);
      m.vm.unregisterIrqfd(irqfd, GSI);
    } finally {
      irqfd.close();
    }
  },
);
