// What a caller of the remote hands it and gets back: the devices to serve,
// the options, and the live state the control socket answers with.

import type { LogSink } from "../log.ts";
import type { DeviceFactory } from "../pci/device.ts";
import type { RequestStats } from "./device_stats.ts";
import type { PirqCounters } from "./iohub.ts";
import type { Tracer } from "./trace.ts";
import type { Heartbeat } from "./watchdog.ts";

/**
 * How the remote's loop found each batch of events: already pending, caught
 * while polling, after a short sleep on its own thread, or after sleeping
 * in the event loop.
 */
export interface Wakeups {
  /** Pending when the loop looked. */
  direct: number;
  /** Caught while busy-polling. */
  polled: number;
  /** After the short sleep on the loop's own thread. */
  synced: number;
  /** After sleeping in Deno's event loop. */
  slept: number;
}

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
  /** The type it was given as (a built-in name or a module), for stats. */
  type?: string;
  /** The device's own options, handed to the factory as `ctx.params`. */
  params?: Readonly<Record<string, string>>;
}

/** Options of a Remote. */
export interface RemoteOptions {
  /**
   * Receives one line per event worth telling, with its severity: errors
   * (a channel closed on an error), info (normal closes, refusals), details
   * (connections).
   */
  log: LogSink;
  /**
   * Busy-poll this many microseconds after each message before sleeping;
   * 0 never polls. Unset: adaptive, up to `pollMaxMicros`.
   */
  pollMicros?: number;
  /** Upper bound of the adaptive polling window (default 32). */
  pollMaxMicros?: number;
  /** Records every message and INTx event (`--trace`); owned by the caller. */
  tracer?: Tracer;
  /** Times every request for the latency figures of state(). */
  timeRequests?: boolean;
  /**
   * Told whose request is served and when it was answered, for a
   * watchdog.
   */
  heartbeat?: Heartbeat;
}

/** One device in Remote.state(). */
export interface DeviceState extends RequestStats {
  /** Its id. */
  id: string;
  /** Its type as given. */
  type: string;
  /** Its PIRQ in the IOHUB. */
  pirq: number;
  /** "listening", "connected" or "closed". */
  channel: "listening" | "connected" | "closed";
  /** INTx counters, and the level count now. */
  intx: PirqCounters & { level: number };
}

/** The remote's live state, as the control socket answers it. */
export interface RemoteState {
  /** The remote's process id. */
  pid: number;
  /** Seconds since the remote was created. */
  uptimeS: number;
  /** Current busy-polling window in microseconds. */
  pollUs: number;
  /** How the loop's batches of events were found (see Remote.wakeups). */
  wakeups: Wakeups;
  /** Every device, in --device order. */
  devices: DeviceState[];
  /**
   * Closes of fds peers sent (ffi/peer_fd.ts): asked for and not done
   * (a peer can make one wait for ever), and fds left open because every
   * closer thread was stuck. Absent before the remote serves.
   */
  peerFdCloses?: { pending: number; dropped: number };
}
