// HTTP client of the meetings APIs (Wazo paths): JSON in and out, errors as ApiError with the server's message.

export class ApiError extends Error {
  /** status 0 means the server could not be reached at all. */
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
  get unreachable() {
    return this.status === 0;
  }
}

export class Api {
  /** base: the server's origin ("https://meetings.example.com"), or "" for the page's own. */
  constructor(base = "", token = null) {
    this.base = String(base || "").replace(/\/+$/, "");
    this.token = token;
  }

  url(path) {
    return this.base + path;
  }

  async request(method, path, { body, headers = {}, token = this.token, timeout = 15000 } = {}) {
    const init = { method, headers: { Accept: "application/json", ...headers } };
    if (token) init.headers["X-Auth-Token"] = token;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeout);
    init.signal = controller.signal;
    let response;
    try {
      response = await fetch(this.url(path), init);
    } catch (error) {
      throw new ApiError(0, "The meetings server cannot be reached. Check your connection.", null);
    } finally {
      clearTimeout(timer);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const message = (data && (data.message || data.reason)) || `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, Array.isArray(message) ? message.join(" ") : String(message), data);
    }
    return data;
  }

  get(path, options) {
    return this.request("GET", path, options);
  }
  post(path, body, options = {}) {
    return this.request("POST", path, { ...options, body });
  }
  put(path, body, options = {}) {
    return this.request("PUT", path, { ...options, body });
  }
  delete(path, options) {
    return this.request("DELETE", path, options);
  }

  /** The web apps' settings: SIP domain, SIP WebSocket path, ICE servers (always explicit). */
  async webConfig() {
    try {
      return normaliseConfig(await this.get("/api/meetings-web/config.json"));
    } catch (error) {
      if (error.status === 404) return normaliseConfig({});
      throw error;
    }
  }

  /** ws(s)://host/path on the same host and port as the API. */
  websocketUrl(path) {
    const url = new URL(path, this.base || window.location.origin);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }
}

function normaliseConfig(raw) {
  return {
    sipDomain: raw.sip_domain || "meetings.local",
    sipWebsocketPath: raw.sip_websocket_path || "/api/asterisk/ws",
    sipWebsocketAvailable: raw.sip_websocket_available !== false,
    iceServers: Array.isArray(raw.ice_servers) ? raw.ice_servers : [],
    lastN: Number.isInteger(raw.last_n) ? raw.last_n : 4,
  };
}
