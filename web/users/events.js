// The events WebSocket (wazo-websocketd protocol, version 2): subscribe by name, "start", then receive events.
// Reconnects by itself; a renewed token is handed over with the "token" operation.

export class EventStream extends EventTarget {
  constructor(api, names) {
    super();
    this.api = api;
    this.names = names;
    this.socket = null;
    this.closed = false;
    this.retryMs = 1000;
    this.ready = false;
  }

  open() {
    if (this.closed || !this.api.token) return;
    const url = `${this.api.websocketUrl("/api/websocketd/")}?token=${encodeURIComponent(this.api.token)}&version=2`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("message", (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      if (data.op === "init") {
        for (const name of this.names) socket.send(JSON.stringify({ op: "subscribe", data: { event_name: name } }));
        socket.send(JSON.stringify({ op: "start" }));
      } else if (data.op === "start") {
        this.ready = true;
        this.retryMs = 1000;
        this.dispatchEvent(new CustomEvent("ready"));
      } else if (data.op === "event" && data.data) {
        this.dispatchEvent(new CustomEvent("event", { detail: data.data }));
      }
    });
    socket.addEventListener("close", () => {
      this.ready = false;
      if (this.socket !== socket || this.closed) return;
      this.dispatchEvent(new CustomEvent("lost"));
      setTimeout(() => this.open(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 30_000);
    });
  }

  updateToken(token) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ op: "token", data: { token } }));
    }
  }

  close() {
    this.closed = true;
    if (this.socket) this.socket.close();
    this.socket = null;
  }
}
