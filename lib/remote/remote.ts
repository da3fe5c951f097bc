// The remote device process: serves several devices, each on its own
// mpqemu socket, plus every resamplefd of the IOHUB, from one epoll set
// driven from Deno's event loop, so device timers, promises and async I/O
// run beside it. A channel that breaks the protocol, stalls, or whose
// device throws is closed alone; the others keep being served.

import {
  acceptUnix,
  asPeerFdOwner,
  closePeerFd,
  Epoll,
  EPOLLIN,
  EPOLLOUT,
  Errno,
  EventFd,
  OWNER_STUCK_LIMIT,
  PEER_CLOSE_STUCK_MS,
  peerFdsPending,
  peerFdsStuck,
  setCloexec,
  setNonblocking,
  SysError,
} from "../../ffi/mod.ts";
import { Channel, ProtocolError, Received } from "../mpqemu/mod.ts";
import type { LogSink } from "../log.ts";
import { modelWarnings, validateModel } from "../pci/validate.ts";
import type { DeviceSpec, RemoteOptions, RemoteState, Wakeups } from "./api.ts";
import { formatCloseLine } from "./close_line.ts";
import type { Tracer } from "./trace.ts";
import { DeviceHost, Outcome } from "./device_host.ts";
import { GuestMemoryError } from "./guest_memory.ts";
import { Iohub, mapIrq, NUM_PIRQS, type PirqCounters } from "./iohub.ts";
import { listenReplacingStale } from "./listen.ts";
import { PollWindow } from "../mpqemu/poll_window.ts";
import type { Heartbeat } from "./watchdog.ts";

export type {
  DeviceEndpoint,
  DeviceSpec,
  DeviceState,
  RemoteOptions,
  RemoteState,
  Wakeups,
} from "./api.ts";

/** Most devices one remote serves: one PIRQ each. */
export const MAX_DEVICES = NUM_PIRQS;

// A peer probing unmapped addresses must not flood the log.
const LOGGED_REFUSALS = 10;
// A peer whose replies stay unread this long is dropped: its queue is full
// or it stopped reading, and it is not read meanwhile.
const STALL_MS = 2000;
// A peer is cut off once OWNER_STUCK_LIMIT closes of fds it sent have each
// been in close(2) PEER_CLOSE_STUCK_MS (they wait on whoever holds the other
// end: that peer; the closer leaves its further fds open meanwhile), or once
// PENDING_CLOSES of its closes are asked for and not done (fds sent faster
// than they close). Either bounds the fds it can keep open; a burst of
// QEMU's SYNC_SYSMEMs at boot stays far below both.
const PENDING_CLOSES = 256;
// How soon a listener out of fds tries to accept again.
const ACCEPT_RETRY_MS = 100;
const ACCEPT_RETRY_LOG = 100;
// Longest stretch of back-to-back requests served before Deno's event loop
// gets a turn (device timers, promises, signal handlers), checked every
// YIELD_CHECK batches since reading the clock is a system call here.
const SLICE_MS = 4;
const YIELD_CHECK = 16;
// One turn in this many of the fast path and of polling goes through epoll.
const FAIR_TURNS = 4;
// How long the loop sleeps on its own thread before it sleeps in the event
// loop: the most a device timer is delayed while a peer is busy.
const SYNC_SLEEP_MS = 1;
const TOKEN_CHANNEL = NUM_PIRQS;
const TOKEN_LISTENER = NUM_PIRQS * 2;
const TOKEN_WAKE = NUM_PIRQS * 3;

interface Slot {
  /** Its place in #slots, which its epoll tokens carry. */
  index: number;
  spec: DeviceSpec;
  host: DeviceHost;
  listenFd: number;
  done: boolean;
  /** Replies are queued: the channel is watched for room, not requests. */
  stalled: boolean;
  stallTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while the listener waits out of epoll to accept again. */
  acceptTimer: ReturnType<typeof setTimeout> | undefined;
  /** Failed accepts retried so far. */
  acceptRetries: number;
  /** The INTx counters when the channel closed (the IOHUB forgets them). */
  closedIntx: PirqCounters | null;
}

/**
 * Serves devices until every channel has closed or stop() is called. run()
 * resolves 0 when all closed normally and 1 when any closed on an error.
 */
export class Remote implements Disposable {
  /** The process's IOHUB (exposed for tests and diagnostics). */
  readonly iohub: Iohub;
  /** How the loop found its events (diagnostics, tuning of the polling). */
  readonly wakeups: Wakeups = { direct: 0, polled: 0, synced: 0, slept: 0 };
  readonly #epoll = new Epoll(64);
  readonly #wake = new EventFd();
  readonly #slots: Slot[] = [];
  readonly #byPirq = new Map<number, Slot>();
  readonly #log: LogSink;
  readonly #poll: PollWindow;
  readonly #tracer: Tracer | null;
  readonly #timed: boolean;
  readonly #heartbeat: Heartbeat | null;
  readonly #created = performance.now();
  #failed = false;
  #open = 0;
  #stopping = false;
  // The channel served last: while its peer is busy, its next request is
  // the likeliest event.
  #hot: Slot | null = null;

  /** A remote with no devices yet. */
  constructor(options: RemoteOptions) {
    this.#log = options.log;
    this.#heartbeat = options.heartbeat ?? null;
    this.#tracer = options.tracer ?? null;
    this.#timed = this.#tracer !== null || (options.timeRequests ?? false);
    this.#poll = options.pollMicros === undefined
      ? new PollWindow({ maxNs: (options.pollMaxMicros ?? 32) * 1000 })
      : new PollWindow({ fixedNs: options.pollMicros * 1000 });
    try {
      this.#epoll.add(this.#wake.fd, EPOLLIN, TOKEN_WAKE);
      this.iohub = new Iohub({
        watch: (fd, pirq) => this.#epoll.add(fd, EPOLLIN, pirq),
        unwatch: (fd) => this.#epoll.remove(fd),
      });
    } catch (e) {
      this.#wake.close();
      this.#epoll.close();
      throw e;
    }
  }

  /**
   * Adds a device: builds its model (a malformed one throws
   * DeviceModelError), then takes over its connected socket fd, or
   * listens on its socket path for the first connection. Device i is
   * function i of the remote's bus; the IOHUB maps it to its PIRQ.
   */
  addDevice(spec: DeviceSpec): void {
    const index = this.#slots.length;
    if (index >= MAX_DEVICES) {
      throw new RangeError(`at most ${MAX_DEVICES} devices per remote`);
    }
    const tracer = this.#tracer;
    const host = new DeviceHost({
      id: spec.id,
      pirq: mapIrq(index),
      build: (ctx) => {
        const model = validateModel(spec.factory(ctx));
        for (const w of modelWarnings(model)) {
          this.#log(`${spec.id}: model: ${w}`, "info");
        }
        return model;
      },
      iohub: this.iohub,
      // A device's own lines (DeviceContext.log) are info: --quiet hides them.
      log: (line) => this.#log(line, "info"),
      params: spec.params,
      onIntx: tracer === null
        ? undefined
        : (level) => tracer.event(spec.id, "intx", { level: level ? 1 : 0 }),
    });
    const slot: Slot = {
      index,
      spec,
      host,
      listenFd: -1,
      done: false,
      stalled: false,
      stallTimer: undefined,
      acceptTimer: undefined,
      acceptRetries: 0,
      closedIntx: null,
    };
    if (spec.endpoint.kind === "fd") {
      this.#attach(index, slot, spec.endpoint.fd);
      this.#log(`${spec.id}: serving on fd ${spec.endpoint.fd}`, "detail");
    } else {
      slot.listenFd = listenReplacingStale(spec.endpoint.path);
      try {
        this.#epoll.add(slot.listenFd, EPOLLIN, TOKEN_LISTENER + index);
      } catch (e) {
        // The slot is not kept, so close() would never see this listener.
        closePeerFd(slot.listenFd);
        Deno.removeSync(spec.endpoint.path);
        throw e;
      }
      this.#log(`${spec.id}: listening on ${spec.endpoint.path}`, "detail");
    }
    this.#slots.push(slot);
    this.#byPirq.set(host.pirq, slot);
    this.#open++;
  }

  #attach(index: number, slot: Slot, fd: number): void {
    const channel = new Channel(fd);
    try {
      // An inherited fd= socket must not live on in a process this one
      // starts (the sandbox's socket reaper): its peer would never see EOF.
      setCloexec(fd, true);
      setNonblocking(fd, true);
      this.#epoll.add(fd, EPOLLIN, TOKEN_CHANNEL + index);
    } catch (e) {
      channel.close();
      throw e;
    }
    slot.host.attach(channel);
    this.#tracer?.event(slot.spec.id, "open");
  }

  /**
   * Serves until every channel has closed or stop() was called; resolves
   * the exit status. Requests that come back to back are served without
   * leaving this function (polling briefly for the next one); when the
   * peers are quiet it sleeps in epoll on a worker thread, so the event
   * loop runs device timers and promises meanwhile.
   */
  async run(): Promise<number> {
    const ep = this.#epoll;
    let yielded = performance.now();
    let turns = 0;
    while (this.#open > 0 && !this.#stopping) {
      if (
        ++turns % YIELD_CHECK === 0 && performance.now() - yielded > SLICE_MS
      ) {
        // Peers that never pause must not starve the event loop: hand it a
        // turn, collecting whatever became ready meanwhile.
        this.#handle(await ep.waitAsync(0));
        yielded = performance.now();
        continue;
      }
      // While a peer is busy its next request is usually there already:
      // reading its channel straight away saves the epoll_wait (every few
      // turns epoll goes first, so the other fds are never left behind).
      if (this.#poll.ns > 0 && turns % FAIR_TURNS !== 0 && this.#serveHot()) {
        this.wakeups.direct++;
        continue;
      }
      let n = ep.wait(0);
      if (n > 0) {
        this.wakeups.direct++;
        this.#handle(n);
        continue;
      }
      const start = performance.now();
      if (this.#pollFor(start)) {
        this.wakeups.polled++;
        this.#poll.update((performance.now() - start) * 1e6);
        continue;
      }
      // A short sleep on this thread first: a peer that answers within it
      // wakes us without a hop through the event loop's threads.
      n = ep.wait(SYNC_SLEEP_MS);
      if (n > 0) {
        this.wakeups.synced++;
        this.#poll.update((performance.now() - start) * 1e6);
      } else {
        this.wakeups.slept++;
        this.#poll.update(Number.POSITIVE_INFINITY);
        n = await ep.waitAsync(-1);
        yielded = performance.now();
      }
      this.#handle(n);
    }
    return this.#failed ? 1 : 0;
  }

  /**
   * Busy-polls for the polling window: mostly one recvmsg on the hot
   * channel, which finds and reads a request at once, and an epoll_wait(0)
   * every few turns for everything else, from `start` for the polling
   * window. Returns whether something was handled.
   */
  #pollFor(start: number): boolean {
    const ep = this.#epoll;
    const until = start + this.#poll.ns / 1e6;
    let handled = false;
    for (let i = 1; !handled && performance.now() < until; i++) {
      if (i % FAIR_TURNS !== 0 && this.#hot !== null) {
        handled = this.#serveHot();
      } else {
        const n = ep.wait(0);
        this.#handle(n);
        handled = n > 0;
      }
    }
    return handled;
  }

  // Serves the channel served last if it has a request; false if not.
  #serveHot(): boolean {
    const slot = this.#hot;
    if (slot === null || slot.done || slot.stalled) return false;
    return this.#serve(slot);
  }

  /**
   * Ends run() after the batch it is handling; safe from signal handlers
   * and device callbacks. The caller then closes the remote.
   */
  stop(): void {
    this.#stopping = true;
    this.#wake.signal();
  }

  /**
   * Waits up to `timeoutMs` (-1: without limit) for one batch of events and
   * handles it; returns how many there were. For tests that step the loop.
   */
  step(timeoutMs: number): number {
    const n = this.#epoll.wait(timeoutMs);
    this.#handle(n);
    return n;
  }

  /** The live state of every device, for the control socket. */
  state(): RemoteState {
    return {
      pid: Deno.pid,
      uptimeS: Math.round(performance.now() - this.#created) / 1000,
      pollUs: this.#poll.ns / 1000,
      wakeups: { ...this.wakeups },
      devices: this.#slots.map((slot) => ({
        id: slot.spec.id,
        type: slot.spec.type ?? "",
        pirq: slot.host.pirq,
        channel: slot.done
          ? "closed"
          : slot.host.attached
          ? "connected"
          : "listening",
        ...slot.host.stats.snapshot(),
        intx: slot.closedIntx !== null ? { ...slot.closedIntx, level: 0 } : {
          ...this.iohub.counters(slot.host.pirq),
          level: this.iohub.level(slot.host.pirq),
        },
      })),
    };
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
        if (this.#tracer === null) this.iohub.resample(token);
        else this.#traceResample(token);
      } catch (e) {
        this.#log(
          `PIRQ ${token}: resample failed: ${(e as Error).message}`,
          "error",
        );
      }
    } else if (token < TOKEN_LISTENER) {
      const slot = this.#slots[token - TOKEN_CHANNEL];
      if (slot.done) return;
      if (slot.stalled) this.#drain(slot);
      else this.#serve(slot);
    } else if (token < TOKEN_WAKE) {
      this.#accept(token - TOKEN_LISTENER);
    } else {
      this.#wake.drain();
    }
  }

  /** Serves what the channel of `slot` holds; false if it held nothing. */
  #serve(slot: Slot): boolean {
    return asPeerFdOwner(fdOwner(slot), () => {
      const served = this.#serveAs(slot);
      this.#cutOffIfClosesPile(slot);
      return served;
    });
  }

  #cutOffIfClosesPile(slot: Slot): void {
    const id = fdOwner(slot);
    const pending = peerFdsPending(id);
    if (pending === 0 || slot.done) return;
    const stuck = peerFdsStuck(id);
    if (stuck >= OWNER_STUCK_LIMIT) {
      this.#closeSafely(
        slot,
        `closed: ${stuck} closes of fds it sent have waited on it for over ${PEER_CLOSE_STUCK_MS} ms`,
        true,
      );
    } else if (pending > PENDING_CLOSES) {
      this.#closeSafely(
        slot,
        `closed: it sent fds faster than they close (${pending} waiting)`,
        true,
      );
    }
  }

  #serveAs(slot: Slot): boolean {
    const host = slot.host;
    const ch = host.channel;
    let state: number;
    try {
      // One read may bring several messages; epoll only reports what is
      // still in the socket, so serve every whole message already buffered
      // unless replies start to queue up.
      do {
        state = ch.receive(true);
        if (state === Received.MESSAGE) this.#handleMessage(slot);
      } while (
        state === Received.MESSAGE && ch.hasBuffered && ch.queued === 0
      );
    } catch (e) {
      this.#closeOnError(slot, e);
      // The device's code returned, by throwing (and its close() ran).
      this.#heartbeat?.beat();
      return true;
    }
    if (state === Received.EOF) {
      this.#closeSafely(slot, "peer closed the connection", false);
      return true;
    }
    if (ch.queued > 0) this.#stall(slot);
    if (state === Received.AGAIN) return false;
    this.#hot = slot;
    return true;
  }

  #traceResample(pirq: number): void {
    const before = this.iohub.counters(pirq);
    this.iohub.resample(pirq);
    const after = this.iohub.counters(pirq);
    if (after.resamples === before.resamples) return;
    this.#tracer!.event(
      this.#byPirq.get(pirq)?.spec.id ?? `pirq${pirq}`,
      "resample",
      {
        reassert: after.reasserts > before.reasserts,
      },
    );
  }

  #handleMessage(slot: Slot): void {
    const host = slot.host;
    const cmd = host.channel.rx.cmd;
    this.#heartbeat?.enter(slot.index);
    host.stats.count(cmd);
    let outcome: number;
    if (this.#timed) {
      const t0 = performance.now();
      const t = this.#tracer?.now() ?? 0;
      outcome = host.handle();
      const us = (performance.now() - t0) * 1000;
      host.stats.time(us);
      this.#tracer?.message(
        host.id,
        host.channel.rx,
        host.channel.tx,
        t,
        us,
        outcome === Outcome.REFUSED,
        host.lastRegion,
        host.lastOffset,
      );
    } else {
      outcome = host.handle();
    }
    this.#heartbeat?.beat();
    if (outcome !== Outcome.REFUSED) return;
    if (host.refusals > LOGGED_REFUSALS) return;
    const more = host.refusals === LOGGED_REFUSALS
      ? " (further refusals counted, not logged)"
      : "";
    this.#log(`${host.id}: refused: ${host.lastRefusal}${more}`, "info");
  }

  // The peer is not reading its replies: stop reading its requests until
  // it has, and drop it if it does not within STALL_MS.
  #stall(slot: Slot): void {
    const fd = slot.host.channel.fd;
    slot.stalled = true;
    this.#epoll.modify(fd, EPOLLOUT, TOKEN_CHANNEL + slot.index);
    slot.stallTimer = setTimeout(() => {
      slot.stallTimer = undefined;
      this.#closeSafely(
        slot,
        `closed: the peer left its replies unread for ${STALL_MS} ms`,
        true,
      );
    }, STALL_MS);
  }

  #drain(slot: Slot): void {
    const ch = slot.host.channel;
    try {
      if (!ch.flush()) return;
      clearTimeout(slot.stallTimer);
      slot.stallTimer = undefined;
      slot.stalled = false;
      this.#epoll.modify(ch.fd, EPOLLIN, TOKEN_CHANNEL + slot.index);
    } catch (e) {
      this.#closeOnError(slot, e);
      return;
    }
    // Requests that arrived with the ones answered may be buffered already.
    if (ch.hasBuffered) this.#serve(slot);
  }

  // A peer that hung up is a normal close; anything else failed the channel.
  // A device's own error gets its stack logged first, so that the close line
  // stays one line that launch and the demo can read.
  #closeOnError(slot: Slot, e: unknown): void {
    if (peerHungUp(e)) {
      this.#closeSafely(slot, "peer closed the connection", false);
      return;
    }
    if (isDeviceError(e) && e instanceof Error && e.stack !== undefined) {
      this.#log(`${slot.spec.id}: device error: ${e.stack}`, "error");
    }
    this.#closeSafely(slot, `closed: ${describeFailure(e)}`, true);
  }

  // Closing a channel must not end the loop that serves the others.
  #closeSafely(slot: Slot, why: string, failed: boolean): void {
    // Its fds (channel, irqfds, guest memory) count as the peer's.
    asPeerFdOwner(fdOwner(slot), () => {
      try {
        this.#close(slot, why, failed);
      } catch (e) {
        this.#failed = true;
        this.#log(
          `${slot.spec.id}: cleanup failed: ${(e as Error).message}`,
          "error",
        );
      }
    });
  }

  #accept(index: number): void {
    const slot = this.#slots[index];
    asPeerFdOwner(fdOwner(slot), () => this.#acceptAs(slot));
  }

  #acceptAs(slot: Slot): void {
    const path = (slot.spec.endpoint as { path: string }).path;
    try {
      const fd = acceptUnix(slot.listenFd);
      this.#stopListening(slot, path);
      this.#attach(slot.index, slot, fd);
      this.#log(`${slot.spec.id}: peer connected on ${path}`, "detail");
    } catch (e) {
      if (outOfResources(e)) {
        this.#acceptLater(slot, (e as Error).message);
        return;
      }
      this.#stopListening(slot, path);
      this.#close(
        slot,
        `accept on ${path} failed: ${(e as Error).message}`,
        true,
      );
    }
  }

  // Out of fds or memory (another peer may hold many, for a while): the
  // connection waits in the backlog and the listener leaves epoll, which
  // would report it again at once, until a retry a little later.
  #acceptLater(slot: Slot, why: string, inEpoll = true): void {
    // The first failure of a run is logged, then one in ACCEPT_RETRY_LOG.
    if (slot.acceptRetries++ % ACCEPT_RETRY_LOG === 0) {
      this.#log(
        `${slot.spec.id}: accept failed: ${why}; retrying every ${ACCEPT_RETRY_MS} ms (${slot.acceptRetries} so far)`,
        "error",
      );
    }
    if (inEpoll) this.#epoll.remove(slot.listenFd);
    slot.acceptTimer = setTimeout(() => {
      slot.acceptTimer = undefined;
      if (slot.done || slot.listenFd < 0) return;
      try {
        this.#epoll.add(slot.listenFd, EPOLLIN, TOKEN_LISTENER + slot.index);
      } catch (e) {
        // Out of memory for epoll too: try again later.
        this.#acceptLater(slot, (e as Error).message, false);
        return;
      }
      this.#wake.signal();
    }, ACCEPT_RETRY_MS);
  }

  #stopListening(slot: Slot, path: string): void {
    if (slot.listenFd < 0) return;
    if (slot.acceptTimer === undefined) this.#epoll.remove(slot.listenFd);
    clearTimeout(slot.acceptTimer);
    slot.acceptTimer = undefined;
    // Connections not accepted go with it, and the fds in their queues:
    // a close that can wait on whoever connected.
    closePeerFd(slot.listenFd);
    slot.listenFd = -1;
    try {
      Deno.removeSync(path);
    } catch {
      // Already gone, or not ours to remove: nothing to clean up.
    }
  }

  #close(slot: Slot, why: string, failed: boolean): void {
    if (slot.done) return;
    if (slot.host.attached) {
      this.#tracer?.event(slot.spec.id, "close", { why, failed });
    }
    slot.done = true;
    this.#open--;
    if (failed) this.#failed = true;
    clearTimeout(slot.stallTimer);
    slot.stallTimer = undefined;
    const host = slot.host;
    const counters = this.iohub.counters(host.pirq);
    slot.closedIntx = counters;
    const severity = failed ? "error" : "info";
    if (!host.attached) {
      this.#log(`${slot.spec.id}: ${why}`, severity);
      host.close();
      return;
    }
    this.#log(
      formatCloseLine({
        id: slot.spec.id,
        counters,
        refusals: host.refusals,
      }, why),
      severity,
    );
    try {
      this.#epoll.remove(host.channel.fd);
    } finally {
      host.close();
    }
  }

  /** Closes every channel, listener, irqfd pair and the epoll fd. */
  close(): void {
    for (const slot of this.#slots) {
      if (slot.spec.endpoint.kind === "socket") {
        this.#stopListening(slot, slot.spec.endpoint.path);
      }
      this.#closeSafely(slot, "remote shutting down", false);
    }
    try {
      this.iohub.finalize();
    } finally {
      this.#wake.close();
      this.#epoll.close();
    }
  }

  /** See close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

// A peer that closes with our replies unread makes recvmsg fail with
// ECONNRESET, and one that closes before we answer makes sendmsg fail with
// EPIPE: either way it hung up, as with a clean EOF.
function peerHungUp(e: unknown): boolean {
  return e instanceof SysError &&
    (e.errno === Errno.ECONNRESET || e.errno === Errno.EPIPE);
}

// Protocol and system errors are the peer's doing; anything else is a bug
// in device code.
function isDeviceError(e: unknown): boolean {
  return !(e instanceof ProtocolError || e instanceof SysError ||
    e instanceof GuestMemoryError);
}

// One line: the error's own message, with "device error" for the device's.
function describeFailure(e: unknown): string {
  if (!isDeviceError(e)) return (e as Error).message;
  const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return `device error: ${text.split("\n")[0]}`;
}

// Accept failures that pass: the process ran out of fds or memory for now.
function outOfResources(e: unknown): boolean {
  return e instanceof SysError &&
    (e.errno === Errno.EMFILE || e.errno === Errno.ENFILE ||
      e.errno === Errno.ENOMEM);
}

// Whose the peer fds a slot's channel and listener close are counted as
// (see asPeerFdOwner): 0 is nobody's.
function fdOwner(slot: Slot): number {
  return slot.index + 1;
}
