// Builds every guest a compiled iohub runs (the demo's testdev and edu boot
// sectors, the KVM interrupt guest) and prints, one per line and relative to the repository,
// each source (with the files it includes) and its binary: scripts/compile.sh embeds exactly these.

import {
  BOOT_ORIGIN,
  BOOT_SOURCE,
  EDU_SOURCE,
} from "../lib/guest/boot_image.ts";
import { buildGuest, guestSources } from "../lib/guest/build.ts";
import { IRQ_GUEST_SOURCE } from "../lib/kvm/irq_guest.ts";
import { GUEST_LOAD_ADDRESS } from "../lib/kvm/machine.ts";

const ROOT = new URL("..", import.meta.url).pathname;

const guests: [string, number][] = [
  [BOOT_SOURCE, BOOT_ORIGIN],
  [EDU_SOURCE, BOOT_ORIGIN],
  [IRQ_GUEST_SOURCE, GUEST_LOAD_ADDRESS],
];
for (const [source, origin] of guests) {
  const bin = await buildGuest(source, { origin }, false);
  for (const path of [...await guestSources(source), bin]) {
    console.log(path.slice(ROOT.length));
  }
}
