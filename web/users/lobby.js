// The lobby of one meeting, for its owner: guests waiting to be let in, accept or reject, kept live by the
// events WebSocket (meeting_user_guest_authorization_created/updated/deleted).

import { chime, h, icon, replace, toast } from "/shared/dom.js";

export const LOBBY_EVENTS = [
  "meeting_user_guest_authorization_created",
  "meeting_user_guest_authorization_updated",
  "meeting_user_guest_authorization_deleted",
];

export class Lobby extends EventTarget {
  /** variant: "stage" (dark, in the meeting's side panel) or "page" (the meetings list). */
  constructor(api, meeting, events, variant = "page") {
    super();
    this.api = api;
    this.meeting = meeting;
    this.events = events;
    this.pending = new Map(); // authorization uuid -> authorization
    this.list = h("ul.lobby-list", { "aria-live": "polite" });
    this.heading = h("h2", {}, "Lobby");
    this.element = h(
      `section.lobby.lobby-${variant}`,
      { dataset: { lobby: meeting.uuid }, "aria-label": `Lobby of ${meeting.name}` },
      this.heading,
      this.list,
    );
    this.onEvent = (event) => this.handle(event.detail);
    this.onReady = () => this.refresh();
    events.addEventListener("event", this.onEvent);
    events.addEventListener("ready", this.onReady);
    this.render();
  }

  get path() {
    return `/api/confd/1.1/users/me/meetings/${this.meeting.uuid}/authorizations`;
  }

  async refresh() {
    try {
      const reply = await this.api.get(this.path);
      this.pending = new Map(reply.items.filter((a) => a.status === "pending").map((a) => [a.uuid, a]));
    } catch {
      /* the meeting may be gone: the list says so when it reloads */
    }
    this.render();
  }

  handle(event) {
    if (!LOBBY_EVENTS.includes(event.name)) return;
    const authorization = event.data || {};
    if (authorization.meeting_uuid !== this.meeting.uuid) return;
    if (event.name.endsWith("_deleted") || authorization.status !== "pending") this.pending.delete(authorization.uuid);
    else this.pending.set(authorization.uuid, authorization);
    if (event.name.endsWith("_created") && authorization.status === "pending") {
      toast(`${authorization.guest_name} is waiting to join “${this.meeting.name}”`);
      chime();
    }
    this.render();
  }

  async decide(authorization, action) {
    try {
      await this.api.put(`${this.path}/${authorization.uuid}/${action}`);
      this.pending.delete(authorization.uuid);
      toast(action === "accept" ? `${authorization.guest_name} was let in` : `${authorization.guest_name} was turned away`);
    } catch (error) {
      toast(`Could not ${action} ${authorization.guest_name}: ${error.message}`);
      if (error.status === 404) this.pending.delete(authorization.uuid);
    }
    this.render();
  }

  render() {
    const waiting = [...this.pending.values()].sort((a, b) => a.creation_time.localeCompare(b.creation_time));
    this.heading.textContent = waiting.length ? `Lobby (${waiting.length} waiting)` : "Lobby";
    this.element.classList.toggle("has-waiting", waiting.length > 0);
    replace(
      this.list,
      waiting.length
        ? waiting.map((a) =>
            h(
              "li.lobby-item",
              { dataset: { authorization: a.uuid, guest: a.guest_name } },
              h("div.who", {}, h("strong", {}, a.guest_name), h("span.muted.small", {}, " is waiting")),
              h(
                "div.row",
                {},
                h(
                  "button.btn.small.ok",
                  { type: "button", "data-action": "accept", onclick: () => this.decide(a, "accept"), "aria-label": `Let ${a.guest_name} in` },
                  icon("check"),
                  "Let in",
                ),
                h(
                  "button.btn.small.ghost.danger-text",
                  { type: "button", "data-action": "reject", onclick: () => this.decide(a, "reject"), "aria-label": `Turn ${a.guest_name} away` },
                  icon("x"),
                  "Reject",
                ),
              ),
            ),
          )
        : [h("li.muted.small.lobby-empty", {}, "No one is waiting.")],
    );
    this.dispatchEvent(new CustomEvent("change", { detail: waiting.length }));
  }

  destroy() {
    this.events.removeEventListener("event", this.onEvent);
    this.events.removeEventListener("ready", this.onReady);
    this.element.remove();
  }
}
