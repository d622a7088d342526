// The signed-in user's token: kept in sessionStorage (this tab only), renewed before it expires.
// The password stays in memory (never stored): after a reload the token lasts until its expiry, then the user
// signs in again.

import { Api, ApiError } from "/shared/api.js";

const KEY = "meetings.session";
const TOKEN_SECONDS = 7200;
// Renew when this share of the lifetime is gone, and at the latest this long before the end.
const RENEW_AT = 0.8;
const RENEW_MARGIN_MS = 60_000;

export class Session extends EventTarget {
  constructor() {
    super();
    this.data = null; // {token, expiresAt, userUuid, tenantUuid, username}
    this.password = null;
    this.timer = null;
    this.api = new Api("");
  }

  restore() {
    try {
      const data = JSON.parse(sessionStorage.getItem(KEY) || "null");
      if (data && data.token && Date.parse(data.expiresAt) - Date.now() > 5000) {
        this.set(data);
        return true;
      }
    } catch {
      /* nothing kept */
    }
    this.clear();
    return false;
  }

  async signIn(username, password) {
    const basic = btoa(unescape(encodeURIComponent(`${username}:${password}`)));
    const reply = await this.api.post(
      "/api/auth/0.1/token",
      { expiration: TOKEN_SECONDS },
      { headers: { Authorization: `Basic ${basic}` }, token: null },
    );
    const token = reply.data;
    this.password = password;
    this.set({
      token: token.token,
      expiresAt: token.expires_at,
      issuedAt: token.issued_at || new Date().toISOString(),
      userUuid: token.metadata.uuid,
      tenantUuid: token.metadata.tenant_uuid,
      username,
    });
  }

  set(data) {
    this.data = data;
    this.api.token = data.token;
    sessionStorage.setItem(KEY, JSON.stringify(data));
    this.schedule();
    this.dispatchEvent(new CustomEvent("token", { detail: data.token }));
  }

  schedule() {
    clearTimeout(this.timer);
    const expires = Date.parse(this.data.expiresAt);
    const issued = Date.parse(this.data.issuedAt || "") || Date.now();
    const renewAt = Math.min(issued + (expires - issued) * RENEW_AT, expires - RENEW_MARGIN_MS);
    const delay = Math.max(1000, renewAt - Date.now());
    this.timer = setTimeout(() => this.renew(), Math.min(delay, 2 ** 31 - 1));
  }

  async renew() {
    if (!this.data) return;
    if (!this.password) {
      // No password in memory (the page was reloaded): let the token run out, then ask to sign in again.
      const left = Date.parse(this.data.expiresAt) - Date.now();
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.expire(), Math.max(0, left));
      return;
    }
    const old = this.data.token;
    try {
      await this.signIn(this.data.username, this.password);
      this.api.delete(`/api/auth/0.1/token/${old}`, { token: null }).catch(() => {});
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return this.expire();
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.renew(), 15_000); // offline for a moment: try again soon
    }
  }

  expire() {
    this.clear();
    this.dispatchEvent(new CustomEvent("expired"));
  }

  async signOut() {
    const token = this.data && this.data.token;
    this.clear();
    if (token) await this.api.delete(`/api/auth/0.1/token/${token}`, { token: null }).catch(() => {});
  }

  clear() {
    clearTimeout(this.timer);
    this.data = null;
    this.password = null;
    this.api.token = null;
    sessionStorage.removeItem(KEY);
  }
}
