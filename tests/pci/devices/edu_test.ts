// edu against QEMU's edu semantics: every register, the access widths it
// refuses, the factorial and DMA completions on timers (with and without
// their interrupts), DMA through a memfd-backed GuestMemory, refused
// transfers and reset.

import { assert, assertEquals } from "@std/assert";
import { closeFd, memfd } from "../../../ffi/mod.ts";
import type { DeviceContext } from "../../../lib/pci/device.ts";
import {
  createEdu,
  DMA_BUFFER,
  DMA_DELAY_MS,
  DMA_IRQ,
  DMA_RUN,
  DMA_TO_RAM,
  Edu,
  EDU_ID,
  EDU_IDENTITY,
  EduReg,
  factorial32,
  IRQ_DMA,
  IRQ_FACT,
  STATUS_COMPUTING,
  STATUS_IRQFACT,
} from "../../../lib/pci/devices/edu.ts";
import { BUILTIN_DEVICES } from "../../../lib/pci/devices/mod.ts";
import { DeviceHost } from "../../../lib/remote/device_host.ts";
import { GuestMemory } from "../../../lib/remote/guest_memory.ts";
import { Iohub } from "../../../lib/remote/iohub.ts";
import { assertNoFdLeak } from "../../fd_check.ts";

const RAM_GPA = 0x20000;
const RAM_SIZE = 0x10000;

/** An edu on a context that records INTx edges and log lines. */
class Bench {
  readonly levels: boolean[] = [];
  readonly logs: string[] = [];
  readonly edu: Edu;

  constructor(memory?: GuestMemory) {
    const ctx: DeviceContext = {
      setIrq: (level) => this.levels.push(level),
      dmaRead: (gpa, dst) => memory?.read(gpa, dst) ?? false,
      dmaWrite: (gpa, src) => memory?.write(gpa, src) ?? false,
      log: (line) => this.logs.push(line),
    };
    this.edu = new Edu(ctx);
  }

  read(offset: number, size = 4): bigint {
    const data = new Uint8Array(size);
    this.edu.read(0, offset, data);
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]);
    return v;
  }

  write(offset: number, value: bigint | number, size = 4): void {
    const data = new Uint8Array(size);
    let v = BigInt(value);
    for (let i = 0; i < size; i++) {
      data[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    this.edu.write(0, offset, data);
  }

  /** Waits (without a deadline of its own) until `done` holds. */
  async until(done: () => boolean): Promise<void> {
    while (!done()) await new Promise((r) => setTimeout(r, 1));
  }
}

function ones(size: number): bigint {
  return (1n << BigInt(8 * size)) - 1n;
}

/** A memfd-backed guest RAM region at RAM_GPA, run through `fn`. */
async function withRam(fn: (m: GuestMemory) => Promise<void>): Promise<void> {
  await assertNoFdLeak(async () => {
    using memory = new GuestMemory();
    const fd = memfd("edu-test", RAM_SIZE);
    try {
      memory.replace([{
        gpa: BigInt(RAM_GPA),
        size: BigInt(RAM_SIZE),
        offset: 0n,
        fd,
      }]);
    } finally {
      closeFd(fd);
    }
    await fn(memory);
  });
}

Deno.test("edu: identity, BAR0 and the built-in registry", () => {
  const b = new Bench();
  assertEquals(BUILTIN_DEVICES.edu !== undefined, true);
  assertEquals(b.edu.identity, EDU_IDENTITY);
  assertEquals(
    [b.edu.identity.vendorId, b.edu.identity.deviceId, b.edu.identity.revision],
    [0x1234, 0x11e8, 0x10],
  );
  assertEquals(b.edu.identity.classCode, 0x00ff00);
  assertEquals(b.edu.identity.interruptPin, 1);
  assertEquals(b.edu.bars, [{ size: 1 << 20, space: "memory" }]);
});

Deno.test("edu: ID, liveness and the refused widths and offsets", () => {
  const b = new Bench();
  assertEquals(b.read(EduReg.ID), BigInt(EDU_ID));
  assertEquals(b.read(EduReg.LIVENESS), 0n);
  b.write(EduReg.LIVENESS, 0x12345678);
  assertEquals(b.read(EduReg.LIVENESS), 0xedcba987n);
  b.write(EduReg.LIVENESS, 0);
  assertEquals(b.read(EduReg.LIVENESS), 0xffffffffn);
  // Below 0x80 only aligned 4-byte accesses reach a register.
  for (const [offset, size] of [[0, 1], [0, 2], [0, 8], [2, 4], [4, 1]]) {
    assertEquals(b.read(offset, size), ones(size), `${size}@${offset}`);
  }
  b.write(EduReg.LIVENESS, 0x11, 1);
  b.write(EduReg.LIVENESS, 0x1111, 2);
  b.write(EduReg.LIVENESS, 0x1111n, 8);
  b.write(EduReg.LIVENESS - 2, 0x11111111);
  assertEquals(b.read(EduReg.LIVENESS), 0xffffffffn, "odd writes ignored");
  // Holes read as all ones and ignore writes; the ID is read-only.
  for (const offset of [0x0c, 0x28, 0x60, 0x64, 0x7c, 0xa0, 0x40000]) {
    assertEquals(b.read(offset), 0xffffffffn, `hole 0x${offset.toString(16)}`);
  }
  b.write(EduReg.ID, 0);
  assertEquals(b.read(EduReg.ID), BigInt(EDU_ID));
  assertEquals(b.levels, []);
});

Deno.test("edu: raise and acknowledge drive INTx while any bit is set", () => {
  const b = new Bench();
  b.write(EduReg.IRQ_RAISE, 0x5);
  assertEquals(b.read(EduReg.IRQ_STATUS), 0x5n);
  b.write(EduReg.IRQ_RAISE, 0x80000000);
  assertEquals(b.read(EduReg.IRQ_STATUS), 0x80000005n);
  b.write(EduReg.IRQ_ACK, 0x4);
  assertEquals(b.read(EduReg.IRQ_STATUS), 0x80000001n);
  assertEquals(b.levels, [true], "one rising edge, held");
  b.write(EduReg.IRQ_ACK, 0xffffffff);
  assertEquals(b.read(EduReg.IRQ_STATUS), 0n);
  assertEquals(b.levels, [true, false]);
  b.write(EduReg.IRQ_RAISE, 0x1, 2);
  assertEquals(b.read(EduReg.IRQ_STATUS), 0n, "2-byte raise ignored");
  b.write(EduReg.IRQ_STATUS, 0x1);
  assertEquals(b.read(EduReg.IRQ_STATUS), 0n, "IRQ_STATUS is read-only");
});

Deno.test("edu: factorial values modulo 2^32", () => {
  assertEquals(factorial32(0), 1);
  assertEquals(factorial32(1), 1);
  assertEquals(factorial32(10), 3628800);
  assertEquals(factorial32(12), 479001600);
  assertEquals(factorial32(13), 6227020800 % 2 ** 32);
  let r = 1n;
  for (let i = 1n; i <= 33n; i++) r = (r * i) % (1n << 32n);
  assertEquals(BigInt(factorial32(33)), r);
  assert(r !== 0n);
  assertEquals(factorial32(34), 0);
  assertEquals(factorial32(0xffffffff), 0);
});

Deno.test("edu: factorial off the access path, no interrupt", async () => {
  const b = new Bench();
  b.write(EduReg.FACTORIAL, 10);
  assertEquals(b.read(EduReg.STATUS), BigInt(STATUS_COMPUTING));
  assertEquals(b.read(EduReg.FACTORIAL), 10n, "operand until done");
  b.write(EduReg.FACTORIAL, 5);
  assertEquals(b.read(EduReg.FACTORIAL), 10n, "ignored while computing");
  b.write(EduReg.STATUS, STATUS_COMPUTING ^ 0xffffff7f);
  assertEquals(b.read(EduReg.STATUS), BigInt(STATUS_COMPUTING));
  await b.until(() => b.read(EduReg.STATUS) === 0n);
  assertEquals(b.read(EduReg.FACTORIAL), 3628800n);
  assertEquals(b.read(EduReg.IRQ_STATUS), 0n);
  assertEquals(b.levels, []);
  b.write(EduReg.FACTORIAL, 5, 8);
  assertEquals(b.read(EduReg.STATUS), 0n, "8-byte write ignored");
});

Deno.test("edu: factorial raises IRQ_FACT when STATUS bit 7 asks", async () => {
  const b = new Bench();
  b.write(EduReg.STATUS, STATUS_IRQFACT | STATUS_COMPUTING);
  assertEquals(b.read(EduReg.STATUS), BigInt(STATUS_IRQFACT));
  b.write(EduReg.FACTORIAL, 12);
  assertEquals(
    b.read(EduReg.STATUS),
    BigInt(STATUS_IRQFACT | STATUS_COMPUTING),
  );
  await b.until(() => b.levels.length > 0);
  assertEquals(b.levels, [true]);
  assertEquals(b.read(EduReg.STATUS), BigInt(STATUS_IRQFACT));
  assertEquals(b.read(EduReg.IRQ_STATUS), BigInt(IRQ_FACT));
  assertEquals(b.read(EduReg.FACTORIAL), 479001600n);
  b.write(EduReg.IRQ_ACK, IRQ_FACT);
  assertEquals(b.levels, [true, false]);
  b.write(EduReg.STATUS, 0);
  assertEquals(b.read(EduReg.STATUS), 0n, "bit 7 clears");
});

Deno.test("edu: DMA registers, 8-byte and 4-byte halves", () => {
  const b = new Bench();
  b.write(EduReg.DMA_SRC, 0x1122334455667788n, 8);
  assertEquals(b.read(EduReg.DMA_SRC, 8), 0x1122334455667788n);
  assertEquals(b.read(EduReg.DMA_SRC), 0x55667788n, "4 bytes: low half");
  assertEquals(b.read(EduReg.DMA_SRC + 4), 0xffffffffn, "0x84 is a hole");
  b.write(EduReg.DMA_SRC + 4, 0);
  assertEquals(b.read(EduReg.DMA_SRC, 8), 0x1122334455667788n);
  b.write(EduReg.DMA_SRC, 0xaabbccdd);
  assertEquals(b.read(EduReg.DMA_SRC, 8), 0xaabbccddn, "high half cleared");
  b.write(EduReg.DMA_DST, 0x40000);
  b.write(EduReg.DMA_COUNT, 0x10n, 8);
  assertEquals(b.read(EduReg.DMA_DST, 8), 0x40000n);
  assertEquals(b.read(EduReg.DMA_COUNT, 8), 0x10n);
  for (const [offset, size] of [[0x80, 1], [0x80, 2], [0x84, 8], [0x8c, 8]]) {
    assertEquals(b.read(offset, size), ones(size), `${size}@${offset}`);
  }
  b.write(EduReg.DMA_COUNT, 0x20, 2);
  assertEquals(b.read(EduReg.DMA_COUNT, 8), 0x10n, "2-byte write ignored");
  // A command without the run bit is not stored.
  b.write(EduReg.DMA_CMD, DMA_IRQ | DMA_TO_RAM);
  assertEquals(b.read(EduReg.DMA_CMD, 8), 0n);
});

Deno.test("edu: DMA RAM -> device -> RAM through a memfd", async () => {
  await withRam(async (memory) => {
    const b = new Bench(memory);
    const pattern = Uint8Array.from({ length: 256 }, (_, i) => i ^ 0x5a);
    assert(memory.write(RAM_GPA + 0x100, pattern));
    b.write(EduReg.DMA_SRC, RAM_GPA + 0x100);
    b.write(EduReg.DMA_DST, DMA_BUFFER + 0x800, 8);
    b.write(EduReg.DMA_COUNT, pattern.length);
    b.write(EduReg.DMA_CMD, DMA_RUN);
    assertEquals(b.read(EduReg.DMA_CMD), BigInt(DMA_RUN), "runs on a timer");
    // Parameters are frozen while the transfer runs.
    b.write(EduReg.DMA_SRC, 0);
    b.write(EduReg.DMA_CMD, DMA_RUN | DMA_TO_RAM);
    assertEquals(b.read(EduReg.DMA_SRC), BigInt(RAM_GPA + 0x100));
    await b.until(() => b.read(EduReg.DMA_CMD) === 0n);
    assertEquals(b.read(EduReg.IRQ_STATUS), 0n, "no interrupt asked");
    assertEquals(b.levels, []);

    // Back out to another place in RAM, this time with the interrupt.
    b.write(EduReg.DMA_SRC, DMA_BUFFER + 0x800);
    b.write(EduReg.DMA_DST, RAM_GPA + 0x8000);
    b.write(EduReg.DMA_CMD, DMA_RUN | DMA_TO_RAM | DMA_IRQ);
    await b.until(() => b.levels.length > 0);
    assertEquals(b.read(EduReg.DMA_CMD), BigInt(DMA_TO_RAM | DMA_IRQ));
    assertEquals(b.read(EduReg.IRQ_STATUS), BigInt(IRQ_DMA));
    const back = new Uint8Array(pattern.length);
    assert(memory.read(RAM_GPA + 0x8000, back));
    assertEquals(back, pattern);
    b.write(EduReg.IRQ_ACK, IRQ_DMA);
    assertEquals(b.levels, [true, false]);
    assertEquals(b.logs, []);
  });
});

Deno.test("edu: the RAM address is masked to 28 bits", async () => {
  await withRam(async (memory) => {
    const b = new Bench(memory);
    assert(memory.write(RAM_GPA, Uint8Array.of(1, 2, 3, 4)));
    b.write(EduReg.DMA_SRC, (0x7n << 32n) | 0x30000000n | BigInt(RAM_GPA), 8);
    b.write(EduReg.DMA_DST, DMA_BUFFER + 4096 - 4);
    b.write(EduReg.DMA_COUNT, 4);
    b.write(EduReg.DMA_CMD, DMA_RUN);
    await b.until(() => b.read(EduReg.DMA_CMD) === 0n);
    b.write(EduReg.DMA_SRC, DMA_BUFFER + 4096 - 4);
    b.write(EduReg.DMA_DST, RAM_GPA + 0x10);
    b.write(EduReg.DMA_CMD, DMA_RUN | DMA_TO_RAM);
    await b.until(() => b.read(EduReg.DMA_CMD) === BigInt(DMA_TO_RAM));
    const out = new Uint8Array(4);
    assert(memory.read(RAM_GPA + 0x10, out));
    assertEquals(out, Uint8Array.of(1, 2, 3, 4));
    assertEquals(b.logs.length, 1);
    assert(b.logs[0].includes("clamping"), b.logs[0]);
  });
});

Deno.test("edu: DMA outside the buffer is refused, logged once", async () => {
  await withRam(async (memory) => {
    const b = new Bench(memory);
    const bad: [number, number][] = [
      [DMA_BUFFER - 1, 4], // starts before the buffer
      [DMA_BUFFER + 4096 - 4, 5], // ends past it
      [0, 0x10], // nowhere near
    ];
    for (const [at, count] of bad) {
      assert(memory.write(RAM_GPA, Uint8Array.of(9, 9, 9, 9, 9)));
      b.write(EduReg.DMA_SRC, at);
      b.write(EduReg.DMA_DST, RAM_GPA);
      b.write(EduReg.DMA_COUNT, count);
      b.write(EduReg.DMA_CMD, DMA_RUN | DMA_TO_RAM | DMA_IRQ);
      await b.until(() => (b.read(EduReg.DMA_CMD) & BigInt(DMA_RUN)) === 0n);
      assertEquals(b.read(EduReg.IRQ_STATUS), BigInt(IRQ_DMA));
      b.write(EduReg.IRQ_ACK, IRQ_DMA);
      const ram = new Uint8Array(5);
      assert(memory.read(RAM_GPA, ram));
      assertEquals(ram, Uint8Array.of(9, 9, 9, 9, 9), `${at}+${count}`);
    }
    // A count that wraps the 64-bit address space is refused too.
    b.write(EduReg.DMA_DST, DMA_BUFFER, 8);
    b.write(EduReg.DMA_SRC, RAM_GPA);
    b.write(EduReg.DMA_COUNT, (1n << 64n) - 1n, 8);
    b.write(EduReg.DMA_CMD, DMA_RUN);
    await b.until(() => b.read(EduReg.DMA_CMD) === 0n);
    assertEquals(b.logs.length, 1, b.logs.join("\n"));
    assert(b.logs[0].includes("refused"), b.logs[0]);
    // The whole buffer, exactly, is fine.
    b.write(EduReg.DMA_COUNT, 4096);
    b.write(EduReg.DMA_CMD, DMA_RUN);
    await b.until(() => b.read(EduReg.DMA_CMD) === 0n);
    assertEquals(b.logs.length, 1);
    b.edu.reset();
    b.write(EduReg.DMA_SRC, 0);
    b.write(EduReg.DMA_CMD, DMA_RUN | DMA_TO_RAM);
    await b.until(() => b.read(EduReg.DMA_CMD) === BigInt(DMA_TO_RAM));
    assertEquals(b.logs.length, 2, "logged again after a reset");
  });
});

Deno.test("edu: DMA from unmapped guest RAM reads zeros", async () => {
  await withRam(async (memory) => {
    const b = new Bench(memory);
    assert(memory.write(RAM_GPA, Uint8Array.of(7, 7)));
    b.write(EduReg.DMA_SRC, RAM_GPA);
    b.write(EduReg.DMA_DST, DMA_BUFFER);
    b.write(EduReg.DMA_COUNT, 2);
    b.write(EduReg.DMA_CMD, DMA_RUN);
    await b.until(() => b.read(EduReg.DMA_CMD) === 0n);
    b.write(EduReg.DMA_SRC, 0x1000); // below the mapped region
    b.write(EduReg.DMA_CMD, DMA_RUN);
    await b.until(() => b.read(EduReg.DMA_CMD) === 0n);
    b.write(EduReg.DMA_SRC, DMA_BUFFER);
    b.write(EduReg.DMA_DST, RAM_GPA);
    b.write(EduReg.DMA_CMD, DMA_RUN | DMA_TO_RAM);
    await b.until(() => b.read(EduReg.DMA_CMD) === BigInt(DMA_TO_RAM));
    const ram = new Uint8Array(2);
    assert(memory.read(RAM_GPA, ram));
    assertEquals(ram, Uint8Array.of(0, 0));
    assertEquals(b.logs.length, 1);
    assert(b.logs[0].includes("outside guest RAM"), b.logs[0]);
  });
});

// Timers with an equal or shorter delay set earlier fire first (HTML timer
// ordering): waiting out one DMA delay after reset() gives cancelled
// completions their chance to show.
Deno.test("edu: reset restores power-on state and cancels completions", async () => {
  const b = new Bench();
  b.write(EduReg.LIVENESS, 1);
  b.write(EduReg.STATUS, STATUS_IRQFACT);
  b.write(EduReg.FACTORIAL, 10);
  b.write(EduReg.IRQ_RAISE, 0x10);
  b.write(EduReg.DMA_SRC, 0x1234);
  b.write(EduReg.DMA_COUNT, 8);
  b.write(EduReg.DMA_CMD, DMA_RUN | DMA_IRQ);
  b.edu.reset();
  assertEquals(b.levels, [true, false]);
  const zeroed = (): void => {
    for (
      const r of [
        EduReg.LIVENESS,
        EduReg.FACTORIAL,
        EduReg.STATUS,
        EduReg.IRQ_STATUS,
      ]
    ) {
      assertEquals(b.read(r), 0n, `0x${r.toString(16)}`);
    }
    for (const r of [EduReg.DMA_SRC, EduReg.DMA_COUNT, EduReg.DMA_CMD]) {
      assertEquals(b.read(r, 8), 0n, `0x${r.toString(16)}`);
    }
  };
  zeroed();
  assertEquals(b.read(EduReg.ID), BigInt(EDU_ID));
  await new Promise((r) => setTimeout(r, DMA_DELAY_MS));
  zeroed();
  assertEquals(b.levels, [true, false]);
  assertEquals(b.logs, []);
});

// Same timer ordering as above: a completion left pending when the host
// closed would fire before this test's wait ends.
Deno.test("edu: closing its host drops pending completions", async () => {
  const logs: string[] = [];
  using iohub = new Iohub({ watch: () => {}, unwatch: () => {} });
  const host = new DeviceHost({
    id: "edu0",
    pirq: 8,
    build: createEdu,
    iohub,
    log: (l) => logs.push(l),
  });
  host.model.write(0, EduReg.DMA_SRC, Uint8Array.of(0, 0x10, 0, 0));
  host.model.write(0, EduReg.DMA_COUNT, Uint8Array.of(4, 0, 0, 0));
  host.model.write(
    0,
    EduReg.DMA_CMD,
    Uint8Array.of(DMA_RUN | DMA_IRQ, 0, 0, 0),
  );
  host.close();
  await new Promise((r) => setTimeout(r, DMA_DELAY_MS));
  assertEquals(logs, []);
  assertEquals(iohub.level(8), 0);
});
