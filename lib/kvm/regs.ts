// struct kvm_regs and struct kvm_sregs as bytes with typed accessors, for
// setting up a vcpu and reporting where a guest stopped.

import { KVM_STRUCT as S } from "./layout.ts";

/** `v` as a bigint, for the u64 fields of KVM structs. */
export function u64(v: number | bigint): bigint {
  return typeof v === "bigint" ? v : BigInt(v);
}

/** Names of the general registers in struct kvm_regs, in order. */
export const REG_NAMES = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rsp",
  "rbp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "rflags",
] as const;

/** One general register name. */
export type RegName = typeof REG_NAMES[number];

/** struct kvm_regs as bytes with typed accessors. */
export class KvmRegs {
  /** The struct's bytes (what KVM_GET_REGS fills and KVM_SET_REGS reads). */
  readonly bytes: Uint8Array<ArrayBuffer> = new Uint8Array(S.regs.size);
  readonly #view = new DataView(this.bytes.buffer);

  /** The value of register `name`. */
  get(name: RegName): bigint {
    return this.#view.getBigUint64(8 * REG_NAMES.indexOf(name), true);
  }

  /** Sets register `name`. */
  set(name: RegName, value: number | bigint): void {
    this.#view.setBigUint64(8 * REG_NAMES.indexOf(name), u64(value), true);
  }
}

/** A segment register as struct kvm_segment describes it. */
export interface KvmSegment {
  /** Linear base address. */
  base: bigint;
  /** Limit in bytes (or pages with g). */
  limit: number;
  /** Selector value. */
  selector: number;
  /** Descriptor type (3: read/write accessed data, 0xb: code). */
  type: number;
  /** Present bit. */
  present: number;
  /** Privilege level. */
  dpl: number;
  /** Default operand size (0: 16-bit). */
  db: number;
  /** Code/data (1) or system (0). */
  s: number;
  /** 64-bit code. */
  l: number;
  /** Granularity. */
  g: number;
  /** Available bit. */
  avl: number;
}

/** The segment registers in struct kvm_sregs. */
export type SegmentName = "cs" | "ds" | "es" | "fs" | "gs" | "ss";

/** struct kvm_sregs as bytes with typed accessors for what iohub uses. */
export class KvmSregs {
  /** The struct's bytes. */
  readonly bytes: Uint8Array<ArrayBuffer> = new Uint8Array(S.sregs.size);
  readonly #view = new DataView(this.bytes.buffer);

  /** Reads segment register `name`. */
  segment(name: SegmentName): KvmSegment {
    const o = S.sregs[name];
    const g = S.segment;
    const v = this.#view;
    return {
      base: v.getBigUint64(o + g.base, true),
      limit: v.getUint32(o + g.limit, true),
      selector: v.getUint16(o + g.selector, true),
      type: v.getUint8(o + g.type),
      present: v.getUint8(o + g.present),
      dpl: v.getUint8(o + g.dpl),
      db: v.getUint8(o + g.db),
      s: v.getUint8(o + g.s),
      l: v.getUint8(o + g.l),
      g: v.getUint8(o + g.g),
      avl: v.getUint8(o + g.avl),
    };
  }

  /** Writes segment register `name`. */
  setSegment(name: SegmentName, seg: KvmSegment): void {
    const o = S.sregs[name];
    const g = S.segment;
    const v = this.#view;
    v.setBigUint64(o + g.base, seg.base, true);
    v.setUint32(o + g.limit, seg.limit, true);
    v.setUint16(o + g.selector, seg.selector, true);
    v.setUint8(o + g.type, seg.type);
    v.setUint8(o + g.present, seg.present);
    v.setUint8(o + g.dpl, seg.dpl);
    v.setUint8(o + g.db, seg.db);
    v.setUint8(o + g.s, seg.s);
    v.setUint8(o + g.l, seg.l);
    v.setUint8(o + g.g, seg.g);
    v.setUint8(o + g.avl, seg.avl);
  }

  /**
   * Sets `name` to a real-mode segment: selector `selector`, base
   * selector * 16, 64 KiB limit.
   */
  setRealModeSegment(name: SegmentName, selector: number, code = false): void {
    this.setSegment(name, {
      base: BigInt(selector) << 4n,
      limit: 0xffff,
      selector,
      type: code ? 0xb : 0x3,
      present: 1,
      dpl: 0,
      db: 0,
      s: 1,
      l: 0,
      g: 0,
      avl: 0,
    });
  }

  /** CR0. */
  get cr0(): bigint {
    return this.#view.getBigUint64(S.sregs.cr0, true);
  }

  /** Sets CR0. */
  set cr0(v: bigint) {
    this.#view.setBigUint64(S.sregs.cr0, v, true);
  }
}
