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

/** The testdev register file, buffer and INTx output. */
export class TestDev implements DeviceModel {
  /** See docs/testdev.md: identity registers. */
  readonly identity: PciIdentity = TESTDEV_IDENTITY;
  /** BAR0: 4 KiB memory; BAR1: 64 bytes of I/O. */
  readonly bars = [
    { size: 4096, space: "memory" },
    { size: 64, space: "io" },
  ] as const;

  readonly #ctx: DeviceContext;
  readonly #buffer = new Uint8Array(BUFFER_SIZE);
  #scratch = 0;
  #status = 0;
  #mask = 0xffffffff;
  #count = 0;
  #dmaLo = 0;
  #dmaHi = 0;
  #dmaLen = 0;
  #dmaStatus = 0;
  #level = false;

  /** A testdev in its reset state, raising INTx through `ctx`. */
  constructor(ctx: DeviceContext) {
    this.#ctx = ctx;
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
    setLe(data, this.#readReg(offset));
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
    this.#scratch = 0;
    this.#status = 0;
    this.#mask = 0xffffffff;
    this.#count = 0;
    this.#dmaLo = 0;
    this.#dmaHi = 0;
    this.#dmaLen = 0;
    this.#dmaStatus = 0;
    this.#buffer.fill(0);
    this.#update();
  }

  #readReg(offset: number): number {
    switch (offset) {
      case Reg.ID:
        return TESTDEV_ID;
      case Reg.SCRATCH:
        return this.#scratch;
      case Reg.IRQ_STATUS:
        return this.#status;
      case Reg.IRQ_MASK:
        return this.#mask;
      case Reg.IRQ_COUNT:
        return this.#count;
      case Reg.DMA_ADDR_LO:
        return this.#dmaLo;
      case Reg.DMA_ADDR_HI:
        return this.#dmaHi;
      case Reg.DMA_LEN:
        return this.#dmaLen;
      case Reg.DMA_STATUS:
        return this.#dmaStatus;
      default:
        // Write-only and unassigned registers read as 0.
        return 0;
    }
  }

  #writeReg(offset: number, v: number): void {
    switch (offset) {
      case Reg.SCRATCH:
        this.#scratch = v;
        break;
      case Reg.IRQ_RAISE:
        this.#status = (this.#status | v) >>> 0;
        break;
      case Reg.IRQ_ACK:
        this.#status = (this.#status & ~v) >>> 0;
        break;
      case Reg.IRQ_MASK:
        this.#mask = v;
        break;
      case Reg.DMA_ADDR_LO:
        this.#dmaLo = v;
        break;
      case Reg.DMA_ADDR_HI:
        this.#dmaHi = v;
        break;
      case Reg.DMA_LEN:
        this.#dmaLen = v;
        break;
      case Reg.DMA_CMD:
        this.#dmaStatus = this.#dma(v) ? 0 : 1;
        this.#status = (this.#status | CAUSE_DMA) >>> 0;
        break;
      default:
        return;
    }
    this.#update();
  }

  /** Runs DMA command `cmd`; false on a bad command, length or address. */
  #dma(cmd: number): boolean {
    const len = this.#dmaLen;
    if (len < 1 || len > BUFFER_SIZE) return false;
    const gpa = this.#dmaHi * 0x1_0000_0000 + this.#dmaLo;
    const buf = this.#buffer.subarray(0, len);
    if (cmd === DMA_TO_GUEST) return this.#ctx.dmaWrite(gpa, buf);
    if (cmd === DMA_FROM_GUEST) return this.#ctx.dmaRead(gpa, buf);
    return false;
  }

  /** Drives INTx from (IRQ_STATUS & IRQ_MASK), counting rising edges. */
  #update(): void {
    const level = (this.#status & this.#mask) !== 0;
    if (level === this.#level) return;
    this.#level = level;
    if (level) this.#count = (this.#count + 1) >>> 0;
    this.#ctx.setIrq(level);
  }
}

/** The factory the remote's `--device testdev` uses. */
export function createTestDev(ctx: DeviceContext): DeviceModel {
  return new TestDev(ctx);
}
