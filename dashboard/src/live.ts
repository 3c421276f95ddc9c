// The live feed: socket.io namespace /tracking with the access token; the server puts us in
// our tenant's room, so positions:batch frames carry exactly our tenant's drivers. We opt into
// those frames (`batches: true`); a client that does not gets the seed's position:update.
import { io, type Socket } from "socket.io-client";
import { useStore } from "./store";
import type { LivePosition } from "./types";

export interface LiveCounters {
  positions: number;
  frames: number;
  lastLag: unknown;
}

export const counters: LiveCounters = { positions: 0, frames: 0, lastLag: null };

export function connectLive(token: string): Socket {
  const store = useStore.getState();
  store.setSocket("connecting");
  const socket = io("/tracking", {
    auth: { token, batches: true },
    transports: ["websocket", "polling"],
    reconnectionDelayMax: 10_000,
  });
  const apply = (positions: LivePosition[]) => {
    counters.positions += positions.length;
    counters.frames += 1;
    useStore.getState().applyPositions(positions, performance.now());
  };
  socket.on("connect", () => {
    useStore.getState().setSocket("live");
    socket.emit("get-active-drivers", {}, (positions: LivePosition[]) => {
      if (Array.isArray(positions)) apply(positions);
    });
  });
  socket.on("disconnect", () => useStore.getState().setSocket("connecting"));
  socket.on("connect_error", () => useStore.getState().setSocket("refused"));
  socket.on("error", () => useStore.getState().setSocket("refused"));
  socket.on("positions:batch", (frame: { positions?: LivePosition[] }) => {
    if (Array.isArray(frame?.positions)) apply(frame.positions);
  });
  socket.on("position:update", (p: LivePosition) => apply([p]));
  socket.on("visit:update", () => useStore.getState().visitChanged());
  socket.on("cdc:lag", (snapshot: unknown) => {
    counters.lastLag = snapshot;
  });
  return socket;
}
