// A man in the middle between introduction clients and the server, on loopback: forwards every frame
// both ways, records the envelopes the server delivers, and can deliver a recorded one again later
// (what a malicious server, or anyone on an unencrypted ws:// path, can do).
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";
import { type EnvelopeMessage, serverMessageSchema } from "../../src/signalling/protocol.js";

export interface RecordingRelay {
  url: string;
  /** Every `envelope` message the server sent through the relay, in order. */
  readonly envelopes: EnvelopeMessage[];
  /** Sends `message` to the newest live client connection, as if the server had sent it. */
  inject(message: EnvelopeMessage): void;
  close(): Promise<void>;
}

export async function startRecordingRelay(serverUrl: string): Promise<RecordingRelay> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
  await once(wss, "listening");
  const envelopes: EnvelopeMessage[] = [];
  const clients: WebSocket[] = [];
  wss.on("connection", (client) => {
    clients.push(client);
    const upstream = new WebSocket(serverUrl, { perMessageDeflate: false });
    const early: string[] = [];
    upstream.on("open", () => {
      for (const frame of early.splice(0)) upstream.send(frame);
    });
    client.on("message", (data) => {
      const frame = data.toString();
      if (upstream.readyState === WebSocket.OPEN) upstream.send(frame);
      else early.push(frame);
    });
    upstream.on("message", (data) => {
      const frame = data.toString();
      const parsed = serverMessageSchema.safeParse(JSON.parse(frame));
      if (parsed.success && parsed.data.type === "envelope") envelopes.push(parsed.data);
      if (client.readyState === WebSocket.OPEN) client.send(frame);
    });
    const closeBoth = () => {
      client.terminate();
      upstream.terminate();
      const index = clients.indexOf(client);
      if (index >= 0) clients.splice(index, 1);
    };
    client.on("close", closeBoth);
    upstream.on("close", closeBoth);
    client.on("error", () => {});
    upstream.on("error", () => {});
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    envelopes,
    inject(message) {
      const client = clients.at(-1);
      if (!client || client.readyState !== WebSocket.OPEN) throw new Error("no live client to inject into");
      client.send(JSON.stringify(message));
    },
    async close() {
      for (const client of clients.splice(0)) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
