// How a launch ended: the exit statuses, the outcome record, and reading
// QEMU's own end (signal, debug-exit code, error line) into one of them.

/**
 * The exit statuses of `iohub launch` (and `iohub demo`), one for each way a
 * run can end.
 */
export const EXIT = {
  /** The guest passed (debug-exit 0) or QEMU exited 0 normally. */
  OK: 0,
  /** Bad command line. */
  USAGE: 2,
  /** QEMU missing, unusable, failed or killed. */
  QEMU: 3,
  /** The remote failed (exited non-zero, or died while QEMU ran). */
  REMOTE: 4,
  /** The guest reported failure (debug-exit with v != 0). */
  GUEST: 5,
  /** --timeout elapsed. */
  TIMEOUT: 6,
  /** Stopped by SIGINT (128 + 2). */
  SIGINT: 130,
  /** Stopped by SIGTERM (128 + 15). */
  SIGTERM: 143,
} as const;

/** The exit status of a run a signal stopped, by signal. */
export const SIGNAL_STATUS = {
  SIGINT: EXIT.SIGINT,
  SIGTERM: EXIT.SIGTERM,
} as const;

/** How a run ended. */
export type LaunchEnd =
  | "guest-passed"
  | "qemu-exited"
  | "guest-failed"
  | "qemu-failed"
  | "qemu-unusable"
  | "remote-failed"
  | "remote-refused"
  | "timeout"
  | "aborted";

/** The result of launch(). */
export interface LaunchOutcome {
  /** The process exit status for this outcome (one of EXIT). */
  status: number;
  /** How the run ended. */
  end: LaunchEnd;
  /** One line saying which side stopped and why. */
  message: string;
  /** The value the guest wrote to the debug-exit port, when it did. */
  guestCode: number | null;
  /** QEMU's exit status (null if it never ran). */
  qemu: Deno.CommandStatus | null;
  /** The remote's exit status (null if it never ran). */
  remote: Deno.CommandStatus | null;
  /** Everything the remote wrote to stderr, line by line. */
  remoteLines: string[];
}

// QEMU's prefix for its own messages; lines with it that are not warnings
// mean QEMU failed, which is how an exit status of 1 (also debug-exit 0) is
// told apart.
const QEMU_WARNING = /^[^:]*: warning: /;
const QEMU_SIGNALLED = /terminating on signal (\d+)/;

/** Whether a line QEMU wrote to stderr reports an error (not a warning). */
export function isQemuError(line: string): boolean {
  return line.trim() !== "" && !QEMU_WARNING.test(line);
}

/**
 * How loud a line of QEMU's stderr is for --quiet: a warning, or QEMU
 * saying it ends on a signal (which launch itself sends to stop it), is
 * info; anything else an error.
 */
export function qemuLineSeverity(line: string): "info" | "error" {
  return QEMU_WARNING.test(line) || QEMU_SIGNALLED.test(line)
    ? "info"
    : "error";
}

/** "was killed by SIGKILL" or "exited with status 1", for messages. */
export function describeStatus(s: Deno.CommandStatus): string {
  return s.signal !== null
    ? `was killed by ${s.signal}`
    : `exited with status ${s.code}`;
}

/** Classifies QEMU ending on its own, from its status and stderr lines. */
export function classifyQemu(
  s: Deno.CommandStatus,
  errors: string[],
): { status: number; end: LaunchEnd; message: string; guest: number | null } {
  if (s.signal !== null) {
    return {
      status: EXIT.QEMU,
      end: "qemu-failed",
      message: `QEMU ${describeStatus(s)}`,
      guest: null,
    };
  }
  const signalled = errors.find((l) => QEMU_SIGNALLED.test(l));
  if (signalled !== undefined) {
    // QEMU exits 0 on SIGTERM/SIGINT/SIGHUP; we did not send it.
    return {
      status: EXIT.QEMU,
      end: "qemu-failed",
      message: `QEMU stopped: ${signalled}`,
      guest: null,
    };
  }
  if (s.code === 0) {
    return {
      status: EXIT.OK,
      end: "qemu-exited",
      message: "QEMU exited normally",
      guest: null,
    };
  }
  const lastError = errors.at(-1);
  // isa-debug-exit exits with (v << 1) | 1; QEMU's own errors exit 1 too,
  // but print a message first.
  if (s.code === 1 && lastError === undefined) {
    return {
      status: EXIT.OK,
      end: "guest-passed",
      message: "guest passed (debug-exit 0)",
      guest: 0,
    };
  }
  if (s.code % 2 === 1 && s.code > 1) {
    const v = s.code >> 1;
    return {
      status: EXIT.GUEST,
      end: "guest-failed",
      message: `guest reported failure code ${v}`,
      guest: v,
    };
  }
  return {
    status: EXIT.QEMU,
    end: "qemu-failed",
    message: `QEMU exited with status ${s.code}${
      lastError === undefined ? "" : ` (${lastError})`
    }`,
    guest: null,
  };
}

/** The remote's last line without its "iohub remote: " prefix. */
export function lastRemoteLine(lines: string[]): string | undefined {
  return lines.at(-1)?.replace(/^iohub remote: /, "");
}

/** An outcome with nothing known yet beyond status, end and message. */
export function outcome(
  status: number,
  end: LaunchEnd,
  message: string,
  extra: Partial<LaunchOutcome> = {},
): LaunchOutcome {
  return {
    status,
    end,
    message,
    guestCode: null,
    qemu: null,
    remote: null,
    remoteLines: [],
    ...extra,
  };
}
