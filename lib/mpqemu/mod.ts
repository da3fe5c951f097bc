// The mpqemu protocol: wire format, socket transport, interrupt event pair.

export * from "./message.ts";
export * from "./channel.ts";
export * from "./irq_level_event.ts";
