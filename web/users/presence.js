// Who is in each of my meetings right now, for the "Live now: N" badge of the meetings list: read once from the calld
// participants API, then kept current by the events WebSocket (meeting_user_participant_joined|left), and read again
// after each reconnection (events may have been missed meanwhile).

export const PRESENCE_EVENTS = ["meeting_user_participant_joined", "meeting_user_participant_left"];

export class Presence extends EventTarget {
  constructor(api, events) {
    super();
    this.api = api;
    this.events = events;
    this.rooms = new Map(); // meeting uuid -> Set of participant ids
    this.watched = [];
    this.onEvent = (event) => this.handle(event.detail);
    this.onReady = () => this.refresh(this.watched);
    events.addEventListener("event", this.onEvent);
    events.addEventListener("ready", this.onReady);
  }

  /** How many are in that meeting now (0 when unknown). */
  count(meetingUuid) {
    const room = this.rooms.get(meetingUuid);
    return room ? room.size : 0;
  }

  /** Read who is in each of these meetings (those of the list), all at once. */
  async refresh(meetingUuids) {
    this.watched = [...meetingUuids];
    await Promise.all(
      this.watched.map(async (uuid) => {
        try {
          const reply = await this.api.get(`/api/calld/1.0/users/me/meetings/${uuid}/participants`);
          this.rooms.set(uuid, new Set(reply.items.map((p) => p.id)));
        } catch {
          this.rooms.delete(uuid); // not mine to read, or gone: no badge
        }
      }),
    );
    this.emit();
  }

  handle(event) {
    if (!PRESENCE_EVENTS.includes(event.name)) return;
    const data = event.data || {};
    if (!data.meeting_uuid || !data.id) return;
    const room = this.rooms.get(data.meeting_uuid) || new Set();
    if (event.name.endsWith("_joined")) room.add(data.id);
    else room.delete(data.id);
    this.rooms.set(data.meeting_uuid, room);
    this.emit(data.meeting_uuid);
  }

  emit(meetingUuid = null) {
    this.dispatchEvent(new CustomEvent("change", { detail: meetingUuid }));
  }

  destroy() {
    this.events.removeEventListener("event", this.onEvent);
    this.events.removeEventListener("ready", this.onReady);
  }
}

/** The badge's text, or null when nobody is there. */
export function liveText(count) {
  return count > 0 ? `Live now: ${count}` : null;
}
