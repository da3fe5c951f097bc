// The proxy side of mpqemu: what QEMU's x-pci-proxy-dev does, for any
// remote (ours or QEMU's -machine x-remote). It sends guest memory and the
// irqfd pair, sizes the BARs like probe_pci_info, keeps a copy of the BAR
// and command registers to decode guest accesses, forwards config, BAR and
// reset requests, and routes the INTx pair into KVM or a user-space sink.

import { closeFd, pollReadable, waitReadable } from "../../ffi/mod.ts";
import { IrqLevelEvent } from "../mpqemu/mod.ts";
import {
  Channel,
  Cmd,
  cmdName,
  Received,
  type SysmemRegion,
  UINT64_MAX,
} from "../mpqemu/mod.ts";

/** The two KVM VM operations the proxy needs (lib/kvm.ts's Vm has them). */
export interface IrqfdRegistrar {
  /** KVM_IRQFD with KVM_IRQFD_FLAG_RESAMPLE: `fd` raises `gsi` as a level. */
  registerIrqfdWithResample(fd: number, resamplefd: number, gsi: number): void;
  /** KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN. */
  unregisterIrqfd(fd: number, gsi: number): void;
}

/** One implemented BAR as the sizing probe found it. */
export interface BarInfo {
  /** BAR number, 0-5. */
  index: number;
  /** Size in bytes (a power of two). */
  size: number;
  /** Memory space (true) or I/O space (false). */
  memory: boolean;
}

/** What probe() learned, the same fields QEMU's probe_pci_info reads. */
export interface ProbeInfo {
  /** Config 0x00. */
  vendorId: number;
  /** Config 0x02. */
  deviceId: number;
  /** Config 0x0a: base class << 8 | sub-class. */
  classId: number;
  /** Config 0x2e. */
  subsystemId: number;
  /** The implemented BARs, in index order. */
  bars: BarInfo[];
}

/** A failed proxy request: names the device, the command and the cause. */
export class ProxyError extends Error {
  /** Builds "NAME: CMD: detail". */
  constructor(name: string, cmd: string, detail: string) {
    super(`${name}: ${cmd}: ${detail}`);
    this.name = "ProxyError";
  }
}

/** Options of a ProxyDevice. */
export interface ProxyOptions {
  /** Name used in errors (default "proxy"). */
  name?: string;
}

const PCI_COMMAND = 0x04;
const PCI_BAR0 = 0x10;
const PCI_NUM_BARS = 6;
// QEMU probes PCI_NUM_REGIONS (7) registers from 0x10: six BARs plus 0x28,
// which a type 0 header does not decode; we send the same sequence.
const PROBE_REGIONS = 7;
const CMD_IO = 0x1;
const CMD_MEMORY = 0x2;

/**
 * The proxy end of one mpqemu connection.
 *
 * @example
 * ```ts
 * const proxy = new ProxyDevice(sock, { name: "testdev" });
 * proxy.syncSysmem([{ fd: memfd, gpa: 0n, size: 1n << 20n, offset: 0n }]);
 * proxy.setupIrqfd();
 * const info = proxy.probe();
 * proxy.mapBars([0xfebf0000, 0xc000]);
 * const sink = proxy.startUserSink();
 * ```
 */
export class ProxyDevice implements Disposable {
  readonly #name: string;
  readonly #ch: Channel;
  #irq: IrqLevelEvent | null = null;
  #vm: IrqfdRegistrar | null = null;
  #gsi = -1;
  #sink: UserIrqSink | null = null;
  // Local copy of the header's first 64 bytes as the proxy last wrote them
  // (QEMU keeps one too, via pci_default_write_config), for BAR decoding.
  readonly #header = new Uint8Array(64);
  readonly #headerView = new DataView(this.#header.buffer);
  readonly #sizes = new Array<number>(PCI_NUM_BARS).fill(0);
  readonly #memory = new Array<boolean>(PCI_NUM_BARS).fill(false);
  readonly #dataView = new DataView(new ArrayBuffer(8));

  /** Takes ownership of `sock`, a connected mpqemu stream socket. */
  constructor(sock: number, opts: ProxyOptions = {}) {
    this.#name = opts.name ?? "proxy";
    this.#ch = new Channel(sock);
  }

  /** The device's name in errors. */
  get name(): string {
    return this.#name;
  }

  /** The irqfd/resamplefd pair sent with SET_IRQFD (null before setup). */
  get irq(): IrqLevelEvent | null {
    return this.#irq;
  }

  /** The GSI the pair is registered on with KVM (-1 when not attached). */
  get gsi(): number {
    return this.#gsi;
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.#ch.closed;
  }

  #request(cmd: string): bigint | null {
    const ch = this.#ch;
    if (ch.closed) throw new ProxyError(this.#name, cmd, "proxy is closed");
    let got: number;
    try {
      ch.send(ch.tx);
      got = ch.receive();
    } catch (e) {
      throw new ProxyError(this.#name, cmd, (e as Error).message);
    }
    if (got !== Received.MESSAGE) {
      throw new ProxyError(this.#name, cmd, "remote closed the connection");
    }
    // A RET carries no fds; any that came are ours to close.
    for (let i = 0; i < ch.rxNumFds; i++) closeFd(ch.rxFds[i]);
    if (ch.rx.cmd !== Cmd.RET) {
      throw new ProxyError(
        this.#name,
        cmd,
        `reply is ${cmdName(ch.rx.cmd)}, expected RET`,
      );
    }
    return ch.rx.sizeNumber === 8 ? ch.rx.retValue : null;
  }

  /** SYNC_SYSMEM: hands the remote the guest memory map (no reply). */
  syncSysmem(regions: readonly SysmemRegion[]): void {
    const ch = this.#ch;
    ch.send(ch.tx.encodeSyncSysmem(regions), regions.map((r) => r.fd));
  }

  /**
   * Creates the irqfd/resamplefd pair and sends it with SET_IRQFD. Called
   * again, it replaces the pair: the remote closes its old copies, and a
   * KVM route or user sink moves to the new pair.
   */
  setupIrqfd(): void {
    const fresh = IrqLevelEvent.create();
    try {
      const ch = this.#ch;
      ch.send(ch.tx.encodeEmpty(Cmd.SET_IRQFD), [
        fresh.irqfd,
        fresh.resamplefd,
      ]);
    } catch (e) {
      fresh.close();
      throw e;
    }
    const old = this.#irq;
    const vm = this.#vm;
    const gsi = this.#gsi;
    if (vm !== null && old !== null) vm.unregisterIrqfd(old.irqfd, gsi);
    this.#irq = fresh;
    old?.close();
    if (vm !== null) {
      vm.registerIrqfdWithResample(fresh.irqfd, fresh.resamplefd, gsi);
    }
  }

  #pair(what: string): IrqLevelEvent {
    if (this.#irq === null) {
      throw new ProxyError(this.#name, what, "setupIrqfd() has not run");
    }
    return this.#irq;
  }

  /**
   * Registers the pair with KVM on `gsi`, the GSI of the device's INTx
   * route, so the remote's irqfd writes raise the guest's line directly.
   */
  attachKvm(vm: IrqfdRegistrar, gsi: number): void {
    const irq = this.#pair("attachKvm");
    if (this.#sink !== null) {
      throw new ProxyError(this.#name, "attachKvm", "a user sink is active");
    }
    if (this.#vm !== null) this.detachKvm();
    vm.registerIrqfdWithResample(irq.irqfd, irq.resamplefd, gsi);
    this.#vm = vm;
    this.#gsi = gsi;
  }

  /**
   * Follows a change of the INTx route as QEMU's proxy_intx_update does:
   * deassign from the old GSI, assign on the new one.
   */
  moveRoute(gsi: number): void {
    const vm = this.#vm;
    if (vm === null) {
      throw new ProxyError(this.#name, "moveRoute", "not attached to KVM");
    }
    const irq = this.#pair("moveRoute");
    vm.unregisterIrqfd(irq.irqfd, this.#gsi);
    this.#gsi = -1;
    vm.registerIrqfdWithResample(irq.irqfd, irq.resamplefd, gsi);
    this.#gsi = gsi;
  }

  /** Removes the pair from KVM (no-op when not attached). */
  detachKvm(): void {
    const vm = this.#vm;
    if (vm === null || this.#irq === null) return;
    this.#vm = null;
    const gsi = this.#gsi;
    this.#gsi = -1;
    vm.unregisterIrqfd(this.#irq.irqfd, gsi);
  }

  /**
   * Delivers interrupts to the caller instead of KVM, for machines without
   * /dev/kvm: see UserIrqSink.
   */
  startUserSink(): UserIrqSink {
    this.#pair("startUserSink");
    if (this.#vm !== null) {
      throw new ProxyError(this.#name, "startUserSink", "attached to KVM");
    }
    this.#sink ??= new UserIrqSink(this);
    return this.#sink;
  }

  /** PCI_CFGREAD: the value, or 0xffffffff when the remote refused. */
  configRead(addr: number, len: number): number {
    this.#ch.tx.encodeCfg(Cmd.PCI_CFGREAD, addr, 0, len);
    const ret = this.#request("PCI_CFGREAD");
    // Like QEMU, a failed read (UINT64_MAX) truncates to all ones.
    return ret === null ? 0xffffffff : Number(ret & 0xffffffffn);
  }

  /**
   * PCI_CFGWRITE, after applying the write to the local header copy so
   * BAR and command changes take effect in the decoder.
   */
  configWrite(addr: number, val: number, len: number): void {
    this.#mirror(addr, val, len);
    this.#ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, addr, val, len);
    this.#request("PCI_CFGWRITE");
  }

  #mirror(addr: number, val: number, len: number): void {
    if (len < 1 || len > 4 || addr < 0 || addr + len > this.#header.length) {
      return;
    }
    for (let i = 0; i < len; i++) {
      this.#header[addr + i] = (val >>> (8 * i)) & 0xff;
    }
    for (let bar = 0; bar < PCI_NUM_BARS; bar++) {
      const size = this.#sizes[bar];
      const off = PCI_BAR0 + 4 * bar;
      if (size === 0 || addr >= off + 4 || addr + len <= off) continue;
      // The register keeps only the address bits its size decodes.
      const raw = this.#headerView.getUint32(off, true);
      const typeBits = this.#memory[bar] ? 0 : 1;
      this.#headerView.setUint32(
        off,
        ((raw & ~(size - 1)) | typeBits) >>> 0,
        true,
      );
    }
  }

  /**
   * Reads identity registers and sizes every BAR exactly as QEMU's
   * probe_pci_info does: read, write all ones, read back, restore.
   */
  probe(): ProbeInfo {
    const info: ProbeInfo = {
      vendorId: this.configRead(0x00, 2),
      deviceId: this.configRead(0x02, 2),
      classId: this.configRead(0x0a, 2),
      subsystemId: this.configRead(0x2e, 2),
      bars: [],
    };
    for (let i = 0; i < PROBE_REGIONS; i++) {
      const reg = PCI_BAR0 + 4 * i;
      const orig = this.configRead(reg, 4);
      this.#ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, reg, 0xffffffff, 4);
      this.#request("PCI_CFGWRITE");
      const mask = this.configRead(reg, 4);
      const size = (~(mask & 0xfffffff0) + 1) >>> 0;
      this.#ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, reg, orig, 4);
      this.#request("PCI_CFGWRITE");
      if (size === 0 || i >= PCI_NUM_BARS) continue;
      const memory = (mask & 1) === 0;
      this.#sizes[i] = size;
      this.#memory[i] = memory;
      info.bars.push({ index: i, size, memory });
    }
    return info;
  }

  /**
   * Programs each probed BAR with its base from `bases` (by BAR index) and
   * enables I/O and memory decoding, as firmware would.
   */
  mapBars(bases: readonly number[]): void {
    let command = this.#headerView.getUint16(PCI_COMMAND, true);
    for (let i = 0; i < PCI_NUM_BARS; i++) {
      const size = this.#sizes[i];
      if (size === 0) continue;
      const base = bases[i];
      if (base === undefined || base % size !== 0) {
        throw new ProxyError(
          this.#name,
          "mapBars",
          `BAR${i} needs a base aligned to its size 0x${size.toString(16)}`,
        );
      }
      this.configWrite(PCI_BAR0 + 4 * i, base, 4);
      command |= this.#memory[i] ? CMD_MEMORY : CMD_IO;
    }
    this.configWrite(PCI_COMMAND, command, 2);
  }

  /** Where BAR `index` decodes now: its base, or -1 when not decoding. */
  barBase(index: number): number {
    const size = this.#sizes[index];
    if (size === 0) return -1;
    const command = this.#headerView.getUint16(PCI_COMMAND, true);
    if ((command & (this.#memory[index] ? CMD_MEMORY : CMD_IO)) === 0) {
      return -1;
    }
    const raw = this.#headerView.getUint32(PCI_BAR0 + 4 * index, true);
    const base = this.#memory[index] ? raw & ~0xf : raw & ~0x3;
    return base === 0 ? -1 : base >>> 0;
  }

  /** BAR_READ at `offset` into BAR `index` (must be decoding). */
  barRead(index: number, offset: number, size: number): bigint {
    const base = this.#decodingBase(index, "BAR_READ");
    this.#ch.tx.encodeBar(
      Cmd.BAR_READ,
      BigInt(base + offset),
      0n,
      size,
      this.#memory[index],
    );
    return this.#request("BAR_READ") ?? UINT64_MAX;
  }

  /** BAR_WRITE of `value` at `offset` into BAR `index` (must be decoding). */
  barWrite(index: number, offset: number, value: bigint, size: number): void {
    const base = this.#decodingBase(index, "BAR_WRITE");
    this.#ch.tx.encodeBar(
      Cmd.BAR_WRITE,
      BigInt(base + offset),
      value,
      size,
      this.#memory[index],
    );
    this.#request("BAR_WRITE");
  }

  #decodingBase(index: number, cmd: string): number {
    const base = this.barBase(index);
    if (base < 0) {
      throw new ProxyError(
        this.#name,
        cmd,
        `BAR${index} is not implemented or not decoding`,
      );
    }
    return base;
  }

  #access(
    addr: number,
    memory: boolean,
    isWrite: boolean,
    data: Uint8Array,
  ): boolean {
    for (let i = 0; i < PCI_NUM_BARS; i++) {
      if (this.#memory[i] !== memory) continue;
      const base = this.barBase(i);
      if (base < 0 || addr < base || addr >= base + this.#sizes[i]) continue;
      const len = data.length;
      const dv = this.#dataView;
      const tx = this.#ch.tx;
      if (isWrite) {
        dv.setBigUint64(0, 0n);
        for (let b = 0; b < len; b++) dv.setUint8(b, data[b]);
        tx.encodeBar(
          Cmd.BAR_WRITE,
          BigInt(addr),
          dv.getBigUint64(0, true),
          len,
          memory,
        );
        this.#request("BAR_WRITE");
      } else {
        tx.encodeBar(Cmd.BAR_READ, BigInt(addr), 0n, len, memory);
        dv.setBigUint64(0, this.#request("BAR_READ") ?? UINT64_MAX, true);
        for (let b = 0; b < len; b++) data[b] = dv.getUint8(b);
      }
      return true;
    }
    return false;
  }

  /**
   * Forwards a guest MMIO access if it falls in a decoding memory BAR;
   * reads fill `data`. False when no BAR claims the address.
   */
  handleMmio(addr: bigint, isWrite: boolean, data: Uint8Array): boolean {
    return this.#access(Number(addr), true, isWrite, data);
  }

  /** Forwards a guest port access if it falls in a decoding I/O BAR. */
  handlePio(port: number, isWrite: boolean, data: Uint8Array): boolean {
    return this.#access(port, false, isWrite, data);
  }

  /**
   * DEVICE_RESET, awaiting the reply; the local header copy is cleared as
   * the device's config space is (BARs unprogrammed, command 0).
   */
  reset(): void {
    this.#ch.tx.encodeEmpty(Cmd.DEVICE_RESET);
    this.#request("DEVICE_RESET");
    this.#header.fill(0);
  }

  /** Detaches from KVM, closes the socket and the irqfd pair; idempotent. */
  close(): void {
    try {
      this.detachKvm();
    } finally {
      this.#sink = null;
      this.#irq?.close();
      this.#irq = null;
      if (!this.#ch.closed) this.#ch.close();
    }
  }

  /** Closes (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Interrupt delivery without KVM: waits for the remote to assert the irqfd
 * and lets the caller signal end-of-interrupt on the resamplefd, the way
 * KVM's level-triggered irqfd does after the guest's EOI. The remote then
 * re-asserts if its level is still high.
 */
export class UserIrqSink {
  readonly #proxy: ProxyDevice;
  #delivered = 0;

  /** Use ProxyDevice.startUserSink(). */
  constructor(proxy: ProxyDevice) {
    this.#proxy = proxy;
  }

  /** Assertions delivered so far. */
  get delivered(): number {
    return this.#delivered;
  }

  #irq(): IrqLevelEvent {
    const irq = this.#proxy.irq;
    if (irq === null) {
      throw new ProxyError(this.#proxy.name, "sink", "proxy is closed");
    }
    return irq;
  }

  /** Non-blocking: true (and consumed) if an assertion is pending. */
  poll(): boolean {
    return this.#take(this.#irq());
  }

  #take(irq: IrqLevelEvent): boolean {
    // Poll before reading: O_NONBLOCK lives in the file description we
    // share with the remote, and QEMU's remote clears it on fds it receives
    // (qio_channel_socket), so a bare read could block.
    if (!waitReadable(irq.irqfd, 0) || irq.drainIrq() === 0n) return false;
    this.#delivered++;
    return true;
  }

  /** Blocks up to `timeoutMs` for an assertion; true when one came. */
  wait(timeoutMs: number): boolean {
    const irq = this.#irq();
    if (this.#take(irq)) return true;
    return waitReadable(irq.irqfd, timeoutMs) && this.#take(irq);
  }

  /** Like wait() without blocking the JS thread. */
  async waitAsync(timeoutMs: number): Promise<boolean> {
    const irq = this.#irq();
    if (this.#take(irq)) return true;
    return await pollReadable(irq.irqfd, timeoutMs) && this.#take(irq);
  }

  /** End of interrupt: the line is lowered; the remote re-asserts if needed. */
  eoi(): void {
    this.#irq().signalResample();
  }
}
