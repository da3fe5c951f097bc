// iohub-testdev (docs/testdev.md): the reference INTx device every test,
// demo and benchmark uses, and the example to copy for a new device.

import {
  type DeviceContext,
  type DeviceModel,
  getLe,
  type PciIdentity,
  setLe,
} from "../device.ts";

/** Register offsets of iohub-testdev (the same in BAR0 and BAR1). */
export const Reg = {
  ID: 0x00,
  SCRATCH: 0x04,
  IRQ_STATUS: 0x08,
  IRQ_RAISE: 0x0c,
  IRQ_ACK: 0x10,
  IRQ_MASK: 0x14,
  IRQ_COUNT: 0x18,
  DMA_ADDR_LO: 0x20,
  DMA_ADDR_HI: 0x24,
  DMA_LEN: 0x28,
  DMA_CMD: 0x2c,
  DMA_STATUS: 0x30,
} as const;

/** Value of the ID register. */
export const TESTDEV_ID = 0x10b10001;
/** DMA_CMD: device buffer -> guest memory. */
export const DMA_TO_GUEST = 1;
/** DMA_CMD: guest memory -> device buffer. */
export const DMA_FROM_GUEST = 2;
/** IRQ_STATUS cause raised when a DMA command completes. */
export const CAUSE_DMA = 1 << 1;
/** Offset of the device buffer in BAR0. */
export const BUFFER_OFFSET = 0x800;
/** Size of the device buffer. */
export const BUFFER_SIZE = 2048;

/** PCI identity of iohub-testdev. */
export const TESTDEV_IDENTITY: PciIdentity = {
  vendorId: 0x1234,
  deviceId: 0x10b1,
  revision: 1,
  classCode: 0x00ff00,
  subsystemVendorId: 0x1234,
  subsystemId: 0x0001,
  interruptPin: 1,
};

// Bytes of the register file: all of BAR1, the start of BAR0.
const REGS_SIZE = 64;
// Registers a guest write just stores; the others act on a write (IRQ_RAISE,
// IRQ_ACK, DMA_CMD) or only the device changes them.
const STORED: ReadonlySet<number> = new Set([
  Reg.SCRATCH,
  Reg.IRQ_MASK,
  Reg.DMA_ADDR_LO,
  Reg.DMA_ADDR_HI,
  Reg.DMA_LEN,
]);

/** The testdev register file, buffer and INTx output. */
export class TestDev implements DeviceModel {
  /** See docs/testdev.md: identity registers. */
  readonly identity: PciIdentity = TESTDEV_IDENTITY;
  /** BAR0: 4 KiB memory; BAR1: the register file, 64 bytes of I/O. */
  readonly bars = [
    { size: 4096, space: "memory" },
    { size: REGS_SIZE, space: "io" },
  ] as const;

  readonly #ctx: DeviceContext;
  readonly #buffer = new Uint8Array(BUFFER_SIZE);
  // One u32 per register, at offset / 4: a read returns what is here, so
  // write-only registers and holes, which nothing stores to, read 0.
  readonly #regs = new Uint32Array(REGS_SIZE / 4);
  #level = false;

  /** A testdev in its reset state, raising INTx through `ctx`. */
  constructor(ctx: DeviceContext) {
    this.#ctx = ctx;
    this.#resetRegs();
  }

  /** See DeviceModel.read. */
  read(bar: number, offset: number, data: Uint8Array): void {
    if (bar === 0 && offset >= BUFFER_OFFSET) {
      const o = offset - BUFFER_OFFSET;
      data.set(this.#buffer.subarray(o, o + data.length));
      return;
    }
    if (data.length !== 4 || (offset & 3) !== 0) {
      data.fill(0xff);
      return;
    }
    // Past the register file (BAR0 below the buffer) reads 0 as well.
    setLe(data, offset < REGS_SIZE ? this.#reg(offset) : 0);
  }

  /** See DeviceModel.write. */
  write(bar: number, offset: number, data: Uint8Array): void {
    if (bar === 0 && offset >= BUFFER_OFFSET) {
      this.#buffer.set(data, offset - BUFFER_OFFSET);
      return;
    }
    if (data.length !== 4 || (offset & 3) !== 0) return;
    this.#writeReg(offset, getLe(data));
  }

  /** See DeviceModel.reset. */
  reset(): void {
    this.#resetRegs();
    this.#buffer.fill(0);
    this.#update();
  }

  #resetRegs(): void {
    this.#regs.fill(0);
    this.#setReg(Reg.ID, TESTDEV_ID);
    this.#setReg(Reg.IRQ_MASK, 0xffffffff);
  }

  #reg(offset: number): number {
    return this.#regs[offset >> 2];
  }

  #setReg(offset: number, v: number): void {
    this.#regs[offset >> 2] = v;
  }

  #writeReg(offset: number, v: number): void {
    switch (offset) {
      case Reg.IRQ_RAISE:
        this.#setReg(Reg.IRQ_STATUS, this.#reg(Reg.IRQ_STATUS) | v);
        break;
      case Reg.IRQ_ACK:
        this.#setReg(Reg.IRQ_STATUS, this.#reg(Reg.IRQ_STATUS) & ~v);
        break;
      case Reg.DMA_CMD:
        this.#setReg(Reg.DMA_STATUS, this.#dma(v) ? 0 : 1);
        this.#setReg(Reg.IRQ_STATUS, this.#reg(Reg.IRQ_STATUS) | CAUSE_DMA);
        break;
      default:
        if (!STORED.has(offset)) return;
        this.#setReg(offset, v);
    }
    this.#update();
  }

  /** Runs DMA command `cmd`; false on a bad command, length or address. */
  #dma(cmd: number): boolean {
    const len = this.#reg(Reg.DMA_LEN);
    if (len < 1 || len > BUFFER_SIZE) return false;
    const gpa = this.#reg(Reg.DMA_ADDR_HI) * 0x1_0000_0000 +
      this.#reg(Reg.DMA_ADDR_LO);
    const buf = this.#buffer.subarray(0, len);
    if (cmd === DMA_TO_GUEST) return this.#ctx.dmaWrite(gpa, buf);
    if (cmd === DMA_FROM_GUEST) return this.#ctx.dmaRead(gpa, buf);
    return false;
  }

  /** Drives INTx from (IRQ_STATUS & IRQ_MASK), counting rising edges. */
  #update(): void {
    const level = (this.#reg(Reg.IRQ_STATUS) & this.#reg(Reg.IRQ_MASK)) !== 0;
    if (level === this.#level) return;
    this.#level = level;
    if (level) this.#setReg(Reg.IRQ_COUNT, this.#reg(Reg.IRQ_COUNT) + 1);
    this.#ctx.setIrq(level);
  }
}

/** The factory the remote's `--device testdev` uses. */
export function createTestDev(ctx: DeviceContext): DeviceModel {
  return new TestDev(ctx);
}
