// The remote device process: one epoll loop serving several devices, each
// on its own mpqemu socket, plus every resamplefd of the IOHUB. A channel
// that breaks the protocol is closed alone; the others keep being served.

import {
  acceptUnix,
  closeFd,
  Epoll,
  EPOLLIN,
  listenUnix,
  setNonblocking,
} from "../../ffi/mod.ts";
import type { DeviceFactory } from "../pci/device.ts";
import { DeviceHost, Outcome } from "./device_host.ts";
import { Iohub, NUM_PIRQS } from "./iohub.ts";
import { Channel, Received } from "../mpqemu/mod.ts";

/** Where a device's connection comes from. */
export type DeviceEndpoint =
  | { kind: "fd"; fd: number }
  | { kind: "socket"; path: string };

/** One device the remote serves. */
export interface DeviceSpec {
  /** Name in logs. */
  id: string;
  /** Builds the model. */
  factory: DeviceFactory;
  /** Its connection. */
  endpoint: DeviceEndpoint;
}

/** Options of a Remote. */
export interface RemoteOptions {
  /** Receives one line per event worth telling (closed channels...). */
  log: (line: string) => void;
  /** Busy-poll this long after each message before sleeping in epoll. */
  pollMicros?: number;
}

// A peer probing unmapped addresses must not flood the log.
const LOGGED_REFUSALS = 10;
const TOKEN_CHANNEL = NUM_PIRQS;
const TOKEN_LISTENER = NUM_PIRQS * 2;

interface Slot {
  spec: DeviceSpec;
  host: DeviceHost | null;
  listenFd: number;
  done: boolean;
}

/**
 * Serves devices until every channel has closed. run() returns 0 when all
 * closed normally and 1 when any closed on an error.
 */
export class Remote implements Disposable {
  /** The process's IOHUB (exposed for tests and diagnostics). */
  readonly iohub: Iohub;
  readonly #epoll = new Epoll(64);
  readonly #slots: Slot[] = [];
  readonly #log: (line: string) => void;
  readonly #pollMicros: number;
  #failed = false;
  #open = 0;

  /** A remote with no devices yet. */
  constructor(options: RemoteOptions) {
    this.#log = options.log;
    this.#pollMicros = options.pollMicros ?? 0;
    this.iohub = new Iohub({
      watch: (fd, pirq) => this.#epoll.add(fd, EPOLLIN, pirq),
      unwatch: (fd) => this.#epoll.remove(fd),
    });
  }

  /**
   * Adds a device: takes over its connected socket fd now, or listens on its
   * socket path and accepts the first connection. Device i gets PIRQ i * 8
   * (the devfn of slot i, as QEMU maps a device to its devfn).
   */
  addDevice(spec: DeviceSpec): void {
    const index = this.#slots.length;
    if (index >= NUM_PIRQS / 8) throw new RangeError("too many devices");
    const slot: Slot = { spec, host: null, listenFd: -1, done: false };
    if (spec.endpoint.kind === "fd") {
      this.#attach(index, slot, spec.endpoint.fd);
    } else {
      slot.listenFd = listenUnix(spec.endpoint.path);
      try {
        this.#epoll.add(slot.listenFd, EPOLLIN, TOKEN_LISTENER + index);
      } catch (e) {
        // The slot is not kept, so close() would never see this listener.
        closeFd(slot.listenFd);
        Deno.removeSync(spec.endpoint.path);
        throw e;
      }
    }
    this.#slots.push(slot);
    this.#open++;
  }

  #attach(index: number, slot: Slot, fd: number): void {
    const channel = new Channel(fd);
    try {
      setNonblocking(fd, true);
      slot.host = new DeviceHost(
        slot.spec.id,
        index * 8,
        slot.spec.factory,
        this.iohub,
        channel,
      );
      this.#epoll.add(fd, EPOLLIN, TOKEN_CHANNEL + index);
    } catch (e) {
      slot.host = null;
      channel.close();
      throw e;
    }
  }

  /** Serves until every channel has closed; returns the exit status. */
  run(): number {
    const ep = this.#epoll;
    const spinMs = this.#pollMicros / 1000;
    while (this.#open > 0) {
      let n = 0;
      if (spinMs > 0) {
        // The peer usually sends its next request within microseconds of
        // our reply: spinning catches it without a wake-up on another CPU.
        const until = performance.now() + spinMs;
        do n = ep.wait(0); while (n === 0 && performance.now() < until);
      }
      if (n === 0) n = ep.wait(-1);
      this.#handle(n);
    }
    return this.#failed ? 1 : 0;
  }

  /**
   * Waits up to `timeoutMs` (-1: without limit) for one batch of events and
   * handles it; returns how many there were. For a caller that runs the
   * loop itself (tests, or a host with its own event loop).
   */
  step(timeoutMs: number): number {
    const n = this.#epoll.wait(timeoutMs);
    this.#handle(n);
    return n;
  }

  /** Whether a channel is still open (or a listener still waits). */
  get serving(): boolean {
    return this.#open > 0;
  }

  #handle(n: number): void {
    const ep = this.#epoll;
    for (let i = 0; i < n; i++) this.#dispatch(ep.token(i));
  }

  #dispatch(token: number): void {
    if (token < TOKEN_CHANNEL) {
      try {
        this.iohub.resample(token);
      } catch (e) {
        this.#log(`PIRQ ${token}: resample failed: ${(e as Error).message}`);
      }
    } else if (token < TOKEN_LISTENER) {
      this.#serve(token - TOKEN_CHANNEL);
    } else {
      this.#accept(token - TOKEN_LISTENER);
    }
  }

  #serve(index: number): void {
    const slot = this.#slots[index];
    const host = slot.host!;
    let state: number;
    try {
      // One read may bring several messages; epoll only reports what is
      // still in the socket, so serve every whole message already buffered.
      do {
        state = host.channel.receive(true);
        if (
          state === Received.MESSAGE && host.handle() === Outcome.REFUSED &&
          host.refusals <= LOGGED_REFUSALS
        ) {
          const more = host.refusals === LOGGED_REFUSALS
            ? " (further refusals counted, not logged)"
            : "";
          this.#log(`${host.id}: refused: ${host.lastRefusal}${more}`);
        }
      } while (state === Received.MESSAGE && host.channel.hasBuffered);
    } catch (e) {
      this.#closeSafely(slot, `closed: ${(e as Error).message}`, true);
      return;
    }
    if (state === Received.EOF) {
      this.#closeSafely(slot, "peer closed the connection", false);
    }
  }

  // Closing a channel must not end the loop that serves the others.
  #closeSafely(slot: Slot, why: string, failed: boolean): void {
    try {
      this.#close(slot, why, failed);
    } catch (e) {
      this.#failed = true;
      this.#log(`${slot.spec.id}: cleanup failed: ${(e as Error).message}`);
    }
  }

  #accept(index: number): void {
    const slot = this.#slots[index];
    const path = (slot.spec.endpoint as { path: string }).path;
    try {
      const fd = acceptUnix(slot.listenFd);
      this.#stopListening(slot, path);
      this.#attach(index, slot, fd);
      this.#log(`${slot.spec.id}: peer connected on ${path}`);
    } catch (e) {
      this.#stopListening(slot, path);
      this.#close(
        slot,
        `accept on ${path} failed: ${(e as Error).message}`,
        true,
      );
    }
  }

  #stopListening(slot: Slot, path: string): void {
    if (slot.listenFd < 0) return;
    this.#epoll.remove(slot.listenFd);
    closeFd(slot.listenFd);
    slot.listenFd = -1;
    try {
      Deno.removeSync(path);
    } catch {
      // Already gone, or not ours to remove: nothing to clean up.
    }
  }

  #close(slot: Slot, why: string, failed: boolean): void {
    if (slot.done) return;
    slot.done = true;
    this.#open--;
    if (failed) this.#failed = true;
    const host = slot.host;
    slot.host = null;
    if (host === null) {
      this.#log(`${slot.spec.id}: ${why}`);
    } else {
      const c = this.iohub.counters(host.pirq);
      this.#log(
        `${slot.spec.id}: ${why}; INTx asserts=${c.asserts} deasserts=${c.deasserts} resamples=${c.resamples} reasserts=${c.reasserts}; refused accesses=${host.refusals}`,
      );
      try {
        this.#epoll.remove(host.channel.fd);
      } finally {
        host.close();
      }
    }
  }

  /** Closes every channel, listener, irqfd pair and the epoll fd. */
  close(): void {
    for (const slot of this.#slots) {
      if (slot.spec.endpoint.kind === "socket") {
        this.#stopListening(slot, slot.spec.endpoint.path);
      }
      this.#close(slot, "remote shutting down", false);
    }
    this.iohub.finalize();
    this.#epoll.close();
  }

  /** See close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}
