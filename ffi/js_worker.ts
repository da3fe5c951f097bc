// A worker thread running a piece of plain JavaScript: iohub's own threads
// (the watchdog, the peer fd closers), which start when device code already
// runs, under --sandbox too, when no file (not even a module of iohub's)
// can be read.

// Taken when iohub's modules load, before any device module does: device
// code may replace the global Worker, and must not get to run these threads.
const WorkerClass = Worker;

/** Starts a module worker running `source` (from a data: URL). */
export function jsWorker(source: string): Worker {
  return new WorkerClass(
    `data:text/javascript,${encodeURIComponent(source)}`,
    { type: "module" },
  );
}
