// The guests' app: /guests/#meeting=<uuid>&server=<ingress uri>[&name=<name>]
// Everything after "#" stays in the browser: the meeting's UUID (the guest's key to it) never reaches a server log.

import { Api } from "/shared/api.js";
import { endedPage, showMessage } from "/shared/pages.js";
import { renderPrejoin } from "/shared/prejoin.js";
import { openLocalMedia, savedDevices, stopStream } from "/shared/media.js";
import { mark } from "/shared/marks.js";

mark("app-start");

const root = document.getElementById("app");
const NAME_KEY = "meetings.guest-name";
const POLL_MS = 1000;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Start fetching sip.js (about two hundred small modules) while the guest reads the page and types a name.
// A failed fetch (the network dropped) is tried again when the guest joins.
let callModule = import("/shared/call.js").then((module) => (mark("sip-loaded"), module));
let meetingView = import("/shared/meeting-view.js");
callModule.catch(() => (callModule = null));
meetingView.catch(() => (meetingView = null));

/** When this site may already use the camera and the microphone (no prompt to show), start opening them now, while
 * the meeting is read: the camera takes a few hundred milliseconds. Otherwise null: the pre-join screen asks. */
async function openMediaEarly() {
  try {
    const states = await Promise.all(
      ["camera", "microphone"].map((name) => navigator.permissions.query({ name }).then((status) => status.state)),
    );
    if (states.some((state) => state !== "granted")) return null;
  } catch {
    return null; // this browser cannot tell: ask on the pre-join screen
  }
  return openLocalMedia(savedDevices());
}

function readLink() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const meeting = (params.get("meeting") || params.get("m") || "").trim();
  let server = (params.get("server") || "").trim();
  if (server) {
    try {
      const url = new URL(server);
      server = url.protocol === "https:" || url.protocol === "http:" ? url.origin + url.pathname.replace(/\/+$/, "") : "";
    } catch {
      server = "";
    }
  }
  return { meeting, server, name: (params.get("name") || "").trim() };
}

function savedName() {
  try {
    return localStorage.getItem(NAME_KEY) || "";
  } catch {
    return "";
  }
}

function rememberName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    /* private mode */
  }
}

function decodeCredentials(encoded) {
  const text = atob(encoded);
  const colon = text.indexOf(":");
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

function newUuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const pages = {
  notFound() {
    showMessage(root, {
      id: "not-found",
      tone: "error",
      iconName: "search",
      title: "This meeting does not exist",
      text: "The link may be mistyped, or the meeting has ended or expired. Ask the organiser for a new link.",
    });
    document.title = "Meeting not found";
  },
  badLink() {
    showMessage(root, {
      id: "bad-link",
      tone: "error",
      iconName: "link",
      title: "This link is incomplete",
      text: "A meeting link looks like …/guests/#meeting=… . Copy the whole link from the invitation and open it again.",
    });
  },
  full(retry) {
    showMessage(root, {
      id: "full",
      tone: "warn",
      iconName: "users",
      title: "This meeting is full",
      text: "The meeting has reached its maximum number of participants. Try again when someone leaves.",
      actions: [{ label: "Try again", primary: true, onClick: retry, id: "retry" }],
    });
    document.title = "Meeting full";
  },
  unreachable(retry, text) {
    showMessage(root, {
      id: "unreachable",
      tone: "error",
      iconName: "wifiOff",
      title: "The meeting server cannot be reached",
      text: text || "Check your internet connection, then try again.",
      actions: [{ label: "Try again", primary: true, onClick: retry, id: "retry" }],
    });
  },
};

class GuestApp {
  constructor() {
    this.link = readLink();
    this.api = new Api(this.link.server || window.location.origin);
    this.meeting = null;
    this.config = null;
    this.guestUuid = newUuid();
    this.authorization = null;
    this.pollTimer = null;
    this.call = null;
    this.view = null;
    this.choice = null;
    this.prepared = null; // {call, credentials}: connected (WebSocket, REGISTER) while the guest gets ready
  }

  async start() {
    if (!UUID_RE.test(this.link.meeting)) {
      pages.badLink();
      return;
    }
    showMessage(root, { tone: "wait", title: "Opening the meeting…" });
    const media = openMediaEarly().catch(() => null); // a stream, or null (the pre-join screen opens them)
    this.earlyMedia = media;
    const base = `/guests/me/meetings/${this.link.meeting}`;
    let status;
    try {
      [this.meeting, status, this.config] = await Promise.all([
        this.api.get(`/api/confd/1.1${base}`),
        this.api.get(`/api/calld/1.0${base}/status`),
        this.api.webConfig(),
      ]);
    } catch (error) {
      this.dropEarlyMedia();
      if (error.status === 404 || error.status === 400) pages.notFound();
      else pages.unreachable(() => this.start(), error.unreachable ? null : error.message);
      return;
    }
    mark("meeting-fetched");
    document.title = `${this.meeting.name} · Join`;
    if (status && status.full) {
      this.dropEarlyMedia();
      pages.full(() => this.start());
      return;
    }
    this.prejoin();
  }

  /** The camera and microphone opened early, for the first pre-join screen only (null if none). */
  takeEarlyMedia() {
    const media = this.earlyMedia;
    this.earlyMedia = null;
    return media ? media.then((stream) => stream || Promise.reject(new Error("not opened early"))) : null;
  }

  dropEarlyMedia() {
    const media = this.earlyMedia;
    this.earlyMedia = null;
    if (media) media.then((stream) => stopStream(stream));
  }

  prejoin() {
    // Without a lobby the credentials are known now: connect and register while the guest gets ready, so that
    // Join is only the INVITE.
    if (!this.meeting.require_authorization && this.meeting.guest_sip_authorization) {
      this.prepareCall(this.meeting.guest_sip_authorization);
    }
    this.prejoinView = renderPrejoin(root, {
      meetingName: this.meeting.name,
      subtitle: "You are invited to",
      askName: true,
      name: this.link.name || savedName(),
      joinLabel: this.meeting.require_authorization ? "Ask to join" : "Join now",
      note: this.meeting.require_authorization
        ? h_note("The organiser lets each guest in. You will wait in the lobby until then.")
        : null,
      onJoin: (choice) => this.onJoin(choice),
      media: this.takeEarlyMedia(),
    });
  }

  async onJoin(choice) {
    mark("join-clicked");
    this.choice = choice;
    rememberName(choice.name);
    // The room may have filled (or the meeting gone) while the guest was getting ready: "full", "not-found" or null.
    const statusCheck = this.api.get(`/api/calld/1.0/guests/me/meetings/${this.meeting.uuid}/status`).then(
      (status) => (mark("status-checked"), status && status.full ? "full" : null),
      (error) => (error.status === 404 ? "not-found" : null),
    );
    if (this.meeting.require_authorization) {
      const problem = await statusCheck;
      if (problem) return this.fail(() => this.refused(problem));
      return this.askToJoin();
    }
    // Without a lobby, dial at once: the check runs alongside, and explains a refusal.
    return this.connect(this.meeting.guest_sip_authorization, statusCheck);
  }

  refused(problem) {
    if (problem === "full") pages.full(() => this.retryFromStart());
    else pages.notFound();
  }

  /** A call connected and registered ahead of Join (the page keeps at most one). */
  async prepareCall(credentials) {
    if (this.prepared && this.prepared.credentials === credentials) return;
    this.dropPreparedCall();
    let MeetingCall;
    try {
      ({ MeetingCall } = await (callModule || import("/shared/call.js")));
    } catch {
      return; // Join tries again
    }
    if (this.prepared || this.call || this.choice) return; // Join came first, or a call is on
    const { username, password } = decodeCredentials(credentials);
    const call = new MeetingCall({ api: this.api, config: this.config, username, password, target: "meeting-guest" });
    this.prepared = { call, credentials };
    call.connect().catch(() => {}); // a failure is met again, and told, at Join
  }

  dropPreparedCall() {
    if (this.prepared) this.prepared.call.close();
    this.prepared = null;
  }

  fail(showPage) {
    if (this.choice) stopStream(this.choice.stream);
    this.choice = null;
    showPage();
  }

  retryFromStart() {
    this.link = readLink();
    this.start();
  }

  // --- the lobby: ask, then poll until the organiser decides

  async askToJoin() {
    const path = `/api/confd/1.1/guests/${this.guestUuid}/meetings/${this.meeting.uuid}/authorizations`;
    try {
      this.authorization = await this.api.post(path, { guest_name: this.choice.name });
    } catch (error) {
      if (error.status === 404) return this.fail(() => pages.notFound());
      return this.fail(() => pages.unreachable(() => this.retryFromStart(), error.unreachable ? null : error.message));
    }
    this.showLobby();
    this.poll(path);
  }

  showLobby() {
    showMessage(root, {
      id: "lobby",
      tone: "wait",
      title: "Waiting for the organiser to let you in",
      text: `You asked to join “${this.meeting.name}” as ${this.choice.name}. This page moves on by itself once you are accepted.`,
      actions: [{ label: "Cancel", onClick: () => this.cancelLobby(), id: "cancel" }],
    });
    document.title = `Waiting · ${this.meeting.name}`;
  }

  poll(path) {
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(async () => {
      let authorization;
      try {
        authorization = await this.api.get(`${path}/${this.authorization.uuid}`);
      } catch (error) {
        if (error.status === 404) {
          // The meeting is gone, or the organiser withdrew the request.
          return this.fail(() => pages.notFound());
        }
        return this.poll(path); // a blip in the network: keep waiting
      }
      if (authorization.status === "accepted" && authorization.guest_sip_authorization) {
        return this.connect(authorization.guest_sip_authorization);
      }
      if (authorization.status === "rejected") {
        return this.fail(() =>
          showMessage(root, {
            id: "rejected",
            tone: "error",
            iconName: "ban",
            title: "You were not let in",
            text: `The organiser of “${this.meeting.name}” declined your request to join.`,
          }),
        );
      }
      this.poll(path);
    }, POLL_MS);
  }

  cancelLobby() {
    clearTimeout(this.pollTimer);
    this.fail(() => this.prejoin());
  }

  // --- the call

  async connect(encodedCredentials, statusCheck = null) {
    let MeetingCall;
    let renderMeeting;
    try {
      ({ MeetingCall } = await (callModule || import("/shared/call.js")));
      ({ renderMeeting } = await (meetingView || import("/shared/meeting-view.js")));
    } catch {
      return this.fail(() => pages.unreachable(() => this.retryFromStart()));
    }
    if (!encodedCredentials) return this.fail(() => pages.notFound());
    const choice = this.choice;
    if (this.meeting.require_authorization) showMessage(root, { tone: "wait", title: "Joining the meeting…" });
    let call = this.prepared && this.prepared.credentials === encodedCredentials ? this.prepared.call : null;
    if (call) this.prepared = null;
    else this.dropPreparedCall();
    if (!call) {
      const { username, password } = decodeCredentials(encodedCredentials);
      call = new MeetingCall({ api: this.api, config: this.config, username, password, target: "meeting-guest" });
    }
    call.displayName = choice.name;
    call.localStream = choice.stream;
    window.__joining = call; // the bench's timeline watches the connection before the call is answered
    try {
      await call.join();
    } catch (error) {
      // The server refuses the INVITE of a full room or a gone meeting by itself; the status says it plainly.
      const problem = statusCheck ? await statusCheck : null;
      return this.fail(() => (problem ? this.refused(problem) : this.joinFailed(error)));
    }
    this.call = call;
    window.__meeting = { call, role: "guest" }; // read by the browser tests and the bench
    this.view = renderMeeting(root, {
      call,
      title: this.meeting.name,
      myName: choice.name,
      micOn: choice.micOn,
      camOn: choice.camOn,
      inviteLink: window.location.href, // the link this guest opened is the one to pass on
      onLeave: () => call.leave(),
    });
    document.title = this.meeting.name;
    call.addEventListener("ended", (event) => this.ended(event.detail));
  }

  joinFailed(error) {
    switch (error.kind) {
      case "full":
        return pages.full(() => this.retryFromStart());
      case "not-found":
        return pages.notFound();
      case "unreachable":
        return pages.unreachable(() => this.retryFromStart(), error.message);
      default:
        return showMessage(root, {
          id: "join-failed",
          tone: "error",
          iconName: "alert",
          title: "You could not join the meeting",
          text: error.message,
          actions: [{ label: "Try again", primary: true, onClick: () => this.retryFromStart(), id: "retry" }],
        });
    }
  }

  ended({ reason, text }) {
    if (this.view) this.view.destroy();
    this.view = null;
    if (this.choice) stopStream(this.choice.stream);
    this.choice = null;
    window.__meeting = { ...(window.__meeting || {}), ended: { reason, text } };
    document.title = "Meeting ended";
    endedPage(root, {
      reason,
      text,
      meetingName: this.meeting.name,
      rejoin: () => this.retryFromStart(),
    });
  }
}

function h_note(text) {
  const p = document.createElement("p");
  p.className = "muted small";
  p.id = "lobby-note";
  p.textContent = text;
  return p;
}

const app = new GuestApp();
window.addEventListener("hashchange", () => {
  if (!app.call || app.call.ended) {
    clearTimeout(app.pollTimer);
    app.retryFromStart();
  }
});
app.start();
