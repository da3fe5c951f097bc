// The interrupt test guest (guest/kvm/irq_guest.S) on a KvmMachine: built
// from source, told what to do through a parameter block in guest RAM, and
// read back through the counters it keeps there.

import { buildGuestBytes } from "../guest/build.ts";
import { DEFAULT_MEM_SIZE, GUEST_LOAD_ADDRESS, KvmMachine } from "./machine.ts";

/** The interrupt test guest's source (see its header comment). */
/** The interrupt test guest's source. */
export const IRQ_GUEST_SOURCE = new URL(
  "../../guest/kvm/irq_guest.S",
  import.meta.url,
).pathname;

/** Where the interrupt guest's parameter block lives in guest RAM. */
const IRQ_GUEST_PARAMS = 0x500;

/** Parameter block offsets, mirroring guest/kvm/irq_guest.S. */
const P = {
  irq: 0,
  flags: 1,
  count: 2,
  hold: 4,
  ioBase: 6,
  mmioBase: 8,
  delivered: 12,
  completed: 14,
  spurious: 16,
  held: 18,
  raised: 20,
  kicks: 22,
  end: 24,
} as const;

/** Interrupt guest behaviour flags (P_FLAGS). */
export const IrqGuestFlag = {
  /** Talk to the testdev through BAR1 (port I/O at ioBase). */
  PIO: 0x01,
  /** Talk to the testdev through BAR0 (MMIO at mmioBase, below 1 MiB). */
  MMIO: 0x02,
  /** Raise each interrupt itself by writing IRQ_RAISE. */
  SELF_RAISE: 0x04,
  /** Write the delivery count to the REPORT port on every delivery. */
  REPORT: 0x08,
  /** Halt with interrupts off forever (only an NMI gets it out). */
  CLI_HALT: 0x10,
  /** Leave the line edge-triggered (for irqfds without resample). */
  EDGE: 0x20,
} as const;

/** What the interrupt guest is told to do. */
export interface IrqGuestParams {
  /** PIC line 0-15 (2 is the cascade); the GSI the irqfd is on. */
  irq: number;
  /** IrqGuestFlag bits. */
  flags: number;
  /** Interrupts to complete before writing DONE (counted since reset). */
  count: number;
  /**
   * Per interrupt, deliveries EOI'd without IRQ_ACK before the one that
   * ACKs (the level stays high, so each is re-injected via resample).
   */
  hold?: number;
  /** Testdev BAR1 base port (with PIO). */
  ioBase?: number;
  /** Testdev BAR0 base (with MMIO; 4 KiB aligned, below 1 MiB). */
  mmioBase?: number;
}

/** What the interrupt guest counted. */
export interface IrqGuestCounters {
  /** Handler entries. */
  delivered: number;
  /** Interrupts completed (ACKed, spurious, or any without a device). */
  completed: number;
  /** Deliveries that found IRQ_STATUS 0. */
  spurious: number;
  /** EOIs without ACK in the interrupt in progress. */
  held: number;
  /** IRQ_RAISE writes (SELF_RAISE). */
  raised: number;
  /** NMIs taken. */
  kicks: number;
}

/** Builds the interrupt guest and a machine running it. */
export async function createIrqGuestMachine(
  memSize = DEFAULT_MEM_SIZE,
): Promise<KvmMachine> {
  const program = await buildGuestBytes(IRQ_GUEST_SOURCE, {
    origin: GUEST_LOAD_ADDRESS,
  });
  return KvmMachine.create({ program, memSize });
}

function paramsView(m: KvmMachine): DataView {
  const mem = m.memory;
  return new DataView(mem.buffer, mem.byteOffset + IRQ_GUEST_PARAMS, P.end);
}

/**
 * Writes the interrupt guest's parameters (between runs, or while it
 * halts: it re-reads count and flags on every wake-up, the line on every
 * resume after DONE). Counters are left alone.
 */
export function writeIrqGuestParams(m: KvmMachine, p: IrqGuestParams): void {
  const v = paramsView(m);
  v.setUint8(P.irq, p.irq);
  v.setUint8(P.flags, p.flags);
  v.setUint16(P.count, p.count, true);
  v.setUint16(P.hold, p.hold ?? 0, true);
  v.setUint16(P.ioBase, p.ioBase ?? 0, true);
  v.setUint32(P.mmioBase, p.mmioBase ?? 0, true);
}

/** Reads the interrupt guest's counters (safe while it runs). */
export function readIrqGuestCounters(m: KvmMachine): IrqGuestCounters {
  const v = paramsView(m);
  return {
    delivered: v.getUint16(P.delivered, true),
    completed: v.getUint16(P.completed, true),
    spurious: v.getUint16(P.spurious, true),
    held: v.getUint16(P.held, true),
    raised: v.getUint16(P.raised, true),
    kicks: v.getUint16(P.kicks, true),
  };
}
