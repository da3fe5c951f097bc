// Test helper: an `iohub remote` subprocess serving testdevs, each driven
// by our ProxyDevice as QEMU's proxy would drive it.

import { ProxyDevice } from "../../lib/proxy/proxy_device.ts";
import { type RemoteProcess, spawnRemote } from "../remote/remote_process.ts";

/** A remote serving testdevs `ids`, each behind a ProxyDevice. */
export function spawnProxied(ids = ["dev"]): RemoteProcess<ProxyDevice> {
  return spawnRemote(ids, [], (fd) => new ProxyDevice(fd, { name: "dev" }));
}
