// The users' app: sign in, my meetings (create, copy the guest link, join, delete), and the meeting itself with
// the lobby at hand. Routes: #/ (the list), #/meetings/<uuid> (join that meeting).

import { h, icon, replace, toast } from "/shared/dom.js";
import { endedPage, showMessage, topbar } from "/shared/pages.js";
import { renderPrejoin } from "/shared/prejoin.js";
import { stopStream } from "/shared/media.js";
import { EventStream } from "./events.js";
import { LOBBY_EVENTS, Lobby } from "./lobby.js";
import { PRESENCE_EVENTS, Presence, liveText } from "./presence.js";
import { Session } from "./session.js";

const root = document.getElementById("app");
const session = new Session();
const callModule = () => import("/shared/call.js");
const meetingViewModule = () => import("/shared/meeting-view.js");

const state = {
  me: null, // users/me
  events: null,
  presence: null, // who is in each meeting now (the list's "Live now" badges)
  lobbies: new Map(), // meeting uuid -> Lobby on the list page
  meetings: [],
  call: null,
  view: null,
  listTimer: null,
  stopLive: null,
  notice: "",
};

// --- formatting

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function timeLeft(expireTime, now = Date.now()) {
  if (!expireTime) return "Never expires";
  const ms = Date.parse(expireTime) - now;
  if (ms <= 0) return "Expiring now";
  const minutes = Math.ceil(ms / 60000);
  if (minutes < 60) return `Expires in ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  if (hours < 72) return `Expires in ${hours} h${rest ? ` ${rest} min` : ""}`;
  const days = Math.floor(hours / 24);
  return `Expires in ${days} d ${hours % 24} h`;
}

export function guestLink(meeting) {
  const server = (meeting.ingress_http_uri || window.location.origin).replace(/\/+$/, "");
  const params = new URLSearchParams({ meeting: meeting.uuid, server });
  return `${server}/guests/#${params.toString()}`;
}

function fullName(me) {
  return [me.firstname, me.lastname].filter(Boolean).join(" ") || me.username;
}

// --- sign in

function signInPage(message = "") {
  leaveEverything();
  document.title = "Sign in · Meetings";
  const username = h("input", { type: "text", id: "username", name: "username", autocomplete: "username", required: true });
  const password = h("input", { type: "password", id: "password", name: "password", autocomplete: "current-password", required: true });
  const error = h("div.alert.error", { role: "alert", hidden: true, id: "signin-error" });
  const submit = h("button.btn.primary.block", { type: "submit", id: "signin" }, "Sign in");
  const form = h(
    "form.card.stack",
    { "aria-labelledby": "signin-title" },
    h("div", {}, h("h1", { id: "signin-title" }, "Sign in"), h("p.muted", {}, "Create meetings, share a link, and meet your guests.")),
    message ? h("div.alert.info", { role: "status" }, message) : null,
    h("label.field", { for: "username" }, h("span", {}, "Username"), username),
    h("label.field", { for: "password" }, h("span", {}, "Password"), password),
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!username.value.trim() || !password.value) {
      error.textContent = "Enter your username and password.";
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      await session.signIn(username.value.trim(), password.value);
      await afterSignIn();
    } catch (problem) {
      error.textContent =
        problem.status === 401 ? "Wrong username or password." : problem.message || "Signing in failed. Try again.";
      error.hidden = false;
      submit.disabled = false;
      submit.textContent = "Sign in";
      password.select();
    }
  });
  replace(root, topbar(), h("main.page.narrow", {}, form));
  username.focus();
}

/** The server did not answer (or answered with an error other than "signed out" or "not found"). */
function unreachablePage(error, retry) {
  return showMessage(root, {
    id: "unreachable",
    tone: "error",
    iconName: "wifiOff",
    title: "The meetings server cannot be reached",
    text: error.message,
    actions: [{ label: "Try again", primary: true, onClick: retry, id: "retry" }],
  });
}

async function afterSignIn() {
  try {
    state.me = await session.api.get("/api/confd/1.1/users/me");
  } catch (error) {
    if (error.status === 401) return signInPage("Your session has ended. Sign in again.");
    return unreachablePage(error, () => afterSignIn());
  }
  if (!state.events) {
    state.events = new EventStream(session.api, [...LOBBY_EVENTS, ...PRESENCE_EVENTS]);
    state.presence = new Presence(session.api, state.events);
    state.presence.addEventListener("change", (event) => renderLive(event.detail));
    state.events.open();
  }
  route();
}

session.addEventListener("token", (event) => state.events && state.events.updateToken(event.detail));
session.addEventListener("expired", () => {
  if (state.call && !state.call.ended) return; // never cut a call short: ask again when it ends
  signInPage("Your session has expired. Sign in again.");
});

async function signOut() {
  leaveEverything();
  if (state.events) state.events.close();
  state.events = null;
  if (state.presence) state.presence.destroy();
  state.presence = null;
  state.me = null;
  await session.signOut();
  window.location.hash = "";
  signInPage("You are signed out.");
}

function leaveEverything() {
  clearInterval(state.listTimer);
  if (state.stopLive) state.stopLive();
  state.stopLive = null;
  for (const lobby of state.lobbies.values()) lobby.destroy();
  state.lobbies.clear();
}

function userBar() {
  return [
    state.me && state.me.admin ? h("a.btn.small.ghost", { href: "#/live", id: "live-link" }, "Live") : null,
    h("span.who", { id: "who" }, state.me ? fullName(state.me) : ""),
    h("button.btn.small.ghost", { type: "button", id: "signout", onclick: signOut }, "Sign out"),
  ];
}

// --- the operators' live view (administrators)

async function livePage() {
  leaveEverything();
  document.title = "Live · Meetings";
  const main = h("main.page", { id: "live" });
  replace(root, topbar({ right: [h("a.btn.small.ghost", { href: "#/" }, "My meetings"), ...userBar()] }), main);
  const { renderLive } = await import("./live.js");
  state.stopLive = renderLive(main, session.api);
}

// --- my meetings

async function listPage() {
  leaveEverything();
  document.title = "My meetings";
  const name = h("input", { type: "text", id: "meeting-name", name: "name", maxlength: "512", required: true, placeholder: "Weekly sync" });
  const persistent = h("input", { type: "checkbox", id: "meeting-persistent", name: "persistent" });
  const lobby = h("input", { type: "checkbox", id: "meeting-lobby", name: "require_authorization" });
  const error = h("div.alert.error", { role: "alert", hidden: true, id: "create-error" });
  const createButton = h("button.btn.primary", { type: "submit", id: "create" }, icon("plus"), "Create meeting");
  const form = h(
    "form.card.stack",
    { id: "create-form", "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "New meeting"),
    h(
      "div.create-grid",
      {},
      h("label.field", { for: "meeting-name" }, h("span", {}, "Name"), name),
      h(
        "div.stack",
        {},
        h("label.check", { for: "meeting-persistent" }, persistent, h("span", {}, "Keep it", h("small", {}, "Never expires; otherwise it is deleted 48 h after creation."))),
        h("label.check", { for: "meeting-lobby" }, lobby, h("span", {}, "Lobby", h("small", {}, "You let each guest in."))),
      ),
    ),
    error,
    h("div.row.end", {}, createButton),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!name.value.trim()) {
      error.textContent = "Give the meeting a name.";
      error.hidden = false;
      name.focus();
      return;
    }
    createButton.disabled = true;
    try {
      const meeting = await session.api.post("/api/confd/1.1/users/me/meetings", {
        name: name.value.trim(),
        persistent: persistent.checked,
        require_authorization: lobby.checked,
      });
      form.reset();
      toast(`“${meeting.name}” is ready: copy its link for your guests`);
      await loadMeetings(meeting.uuid);
    } catch (problem) {
      if (problem.status === 401) return signInPage("Your session has expired. Sign in again.");
      error.textContent = problem.message;
      error.hidden = false;
    } finally {
      createButton.disabled = false;
    }
  });

  const list = h("ul.meetings", { id: "meetings", "aria-live": "polite" }, h("li.empty", {}, "Loading your meetings…"));
  const notice = state.notice ? h("div.alert.info", { role: "status", id: "notice" }, state.notice) : null;
  state.notice = "";
  replace(
    root,
    topbar({ right: userBar() }),
    h(
      "main.page",
      {},
      h("h1", {}, "My meetings"),
      notice,
      form,
      h("div.section-head", {}, h("h2", { id: "list-title" }, "Meetings"), h("span.muted.small", { id: "meeting-count" })),
      list,
    ),
  );
  await loadMeetings();
  state.listTimer = setInterval(() => renderMeetings(), 30_000);
}

async function loadMeetings(highlight) {
  try {
    const reply = await session.api.get("/api/confd/1.1/users/me/meetings?order=creation_time&direction=desc");
    state.meetings = reply.items;
    if (state.presence) state.presence.refresh(state.meetings.map((m) => m.uuid)); // the badges follow when read
  } catch (error) {
    if (error.status === 401) return signInPage("Your session has expired. Sign in again.");
    const list = document.getElementById("meetings");
    if (list) replace(list, h("li.alert.error", { role: "alert" }, `Your meetings could not be loaded: ${error.message}`));
    return;
  }
  renderMeetings(highlight);
}

function renderMeetings(highlight) {
  const list = document.getElementById("meetings");
  if (!list) return;
  const count = document.getElementById("meeting-count");
  if (count) count.textContent = state.meetings.length === 1 ? "1 meeting" : `${state.meetings.length} meetings`;
  // Lobbies of meetings that went away.
  for (const [uuid, lobby] of state.lobbies) {
    if (!state.meetings.some((m) => m.uuid === uuid && m.require_authorization)) {
      lobby.destroy();
      state.lobbies.delete(uuid);
    }
  }
  if (!state.meetings.length) {
    replace(list, h("li.empty", {}, "No meetings yet. Create one above, then share its link."));
    return;
  }
  replace(list, state.meetings.map((meeting) => meetingItem(meeting)));
  if (highlight) {
    const item = list.querySelector(`[data-meeting="${highlight}"]`);
    if (item) item.scrollIntoView({ block: "nearest" });
  }
}

function meetingItem(meeting) {
  const link = guestLink(meeting);
  const created = dateFormat.format(new Date(meeting.creation_time));
  const item = h(
    "li.meeting-item",
    { dataset: { meeting: meeting.uuid, guestLink: link, name: meeting.name } },
    h(
      "div",
      {},
      h("h3", {}, meeting.name),
      h(
        "div.meeting-meta",
        {},
        h("span", { title: meeting.creation_time }, `Created ${created}`),
        h(
          `span.badge${meeting.persistent ? ".keep" : ""}`,
          { "data-expiry": "" },
          icon(meeting.persistent ? "infinity" : "clock"),
          timeLeft(meeting.expire_time),
        ),
        meeting.require_authorization ? h("span.badge.lock", {}, icon("lock"), "Lobby") : null,
        liveBadge(meeting.uuid),
        h("span", { title: "Extension to dial from a phone" }, `Ext. ${meeting.exten}`),
      ),
    ),
    h(
      "div.meeting-actions",
      {},
      h(
        "button.btn.small.ghost",
        { type: "button", "data-action": "copy", onclick: () => copyLink(link), "aria-label": `Copy the guest link of ${meeting.name}` },
        icon("copy"),
        "Copy link",
      ),
      h("a.btn.small.primary", { href: `#/meetings/${meeting.uuid}`, "data-action": "join", "aria-label": `Join ${meeting.name}` }, "Join"),
      h(
        "button.btn.small.ghost.danger-text",
        { type: "button", "data-action": "delete", onclick: () => confirmDelete(meeting), "aria-label": `Delete ${meeting.name}` },
        icon("trash"),
        "Delete",
      ),
    ),
  );
  if (meeting.require_authorization && state.events) {
    let lobby = state.lobbies.get(meeting.uuid);
    if (!lobby) {
      lobby = new Lobby(session.api, meeting, state.events, "page");
      state.lobbies.set(meeting.uuid, lobby);
      lobby.refresh();
    }
    item.append(lobby.element);
  }
  return item;
}

/** "Live now: N" while people are in the meeting (hidden otherwise). */
function liveBadge(meetingUuid) {
  const badge = h("span.badge.live", { "data-live": meetingUuid, role: "status" });
  updateLiveBadge(badge, meetingUuid);
  return badge;
}

function updateLiveBadge(badge, meetingUuid) {
  const count = state.presence ? state.presence.count(meetingUuid) : 0;
  const text = liveText(count);
  badge.hidden = !text;
  badge.textContent = text || "";
  badge.title = text ? `${count} ${count === 1 ? "person is" : "people are"} in this meeting now` : "";
  badge.dataset.count = String(count);
}

/** The badges of the list, without redrawing it (a meeting's, or all). */
function renderLive(meetingUuid) {
  for (const badge of document.querySelectorAll("#meetings [data-live]")) {
    if (!meetingUuid || badge.dataset.live === meetingUuid) updateLiveBadge(badge, badge.dataset.live);
  }
}

async function copyLink(link) {
  try {
    await navigator.clipboard.writeText(link);
    toast("Guest link copied");
  } catch {
    // No clipboard access (an insecure page, or a refusal): show the link to copy by hand.
    const input = h("input", { type: "text", readonly: true, value: link, id: "link-to-copy", "aria-label": "Guest link" });
    const dialog = h(
      "dialog.card",
      { "aria-labelledby": "copy-title" },
      h("h2", { id: "copy-title" }, "Guest link"),
      h("p.muted", {}, "Copy this link and send it to your guests."),
      input,
      h("div.row.end", { style: "margin-top:1rem" }, h("button.btn.primary", { type: "button", onclick: () => dialog.close() }, "Done")),
    );
    document.body.append(dialog);
    dialog.addEventListener("close", () => dialog.remove());
    dialog.showModal();
    input.select();
  }
}

function confirmDelete(meeting) {
  const dialog = h(
    "dialog.card",
    { id: "confirm-delete", "aria-labelledby": "delete-title" },
    h("h2", { id: "delete-title" }, `Delete “${meeting.name}”?`),
    h("p.muted", {}, "Everyone still in the meeting is disconnected, and its link stops working."),
    h(
      "div.row.end",
      {},
      h("button.btn.ghost", { type: "button", value: "cancel", onclick: () => dialog.close() }, "Cancel"),
      h(
        "button.btn.danger",
        {
          type: "button",
          id: "confirm-delete-button",
          onclick: async () => {
            dialog.close();
            await deleteMeeting(meeting);
          },
        },
        "Delete meeting",
      ),
    ),
  );
  document.body.append(dialog);
  dialog.addEventListener("close", () => dialog.remove());
  dialog.showModal();
}

async function deleteMeeting(meeting) {
  try {
    await session.api.delete(`/api/confd/1.1/users/me/meetings/${meeting.uuid}`);
    toast(`“${meeting.name}” was deleted`);
  } catch (error) {
    if (error.status === 401) return signInPage("Your session has expired. Sign in again.");
    if (error.status !== 404) toast(`“${meeting.name}” could not be deleted: ${error.message}`);
  }
  await loadMeetings();
}

// --- joining a meeting

async function joinPage(uuid) {
  leaveEverything();
  showMessage(root, { tone: "wait", title: "Opening the meeting…" });
  let meeting;
  let config;
  try {
    [meeting, config] = await Promise.all([
      session.api.get(`/api/confd/1.1/users/me/meetings/${uuid}`),
      session.api.webConfig(),
    ]);
  } catch (error) {
    if (error.status === 401) return signInPage("Your session has expired. Sign in again.");
    if (error.status === 404 || error.status === 400) {
      return showMessage(root, {
        id: "not-found",
        tone: "error",
        iconName: "search",
        title: "This meeting does not exist",
        text: "It may have been deleted or have expired.",
        actions: [{ label: "Back to my meetings", href: "#/", primary: true, id: "home" }],
      });
    }
    return unreachablePage(error, () => joinPage(uuid));
  }
  document.title = `${meeting.name} · Join`;
  const callReady = callModule(); // fetch sip.js while the camera starts
  renderPrejoin(root, {
    meetingName: meeting.name,
    subtitle: "Ready to join?",
    askName: false,
    topRight: userBar(),
    onBack: () => (window.location.hash = "#/"),
    onJoin: (choice) => startCall(meeting, config, choice, callReady),
  });
}

async function startCall(meeting, config, choice, callReady) {
  const { MeetingCall } = await callReady;
  const { renderMeeting } = await meetingViewModule();
  const sip = state.me.sip;
  const call = new MeetingCall({
    api: session.api,
    config,
    username: sip.username,
    password: sip.password,
    target: `wazo-meeting-${meeting.uuid}`,
    displayName: fullName(state.me),
    localStream: choice.stream,
  });
  try {
    await call.join();
  } catch (error) {
    stopStream(choice.stream);
    const titles = {
      full: "This meeting is full",
      "not-found": "This meeting does not exist any more",
      unreachable: "The meeting server cannot be reached for calls",
    };
    return showMessage(root, {
      id: error.kind === "full" ? "full" : "join-failed",
      tone: error.kind === "full" ? "warn" : "error",
      iconName: error.kind === "full" ? "users" : "alert",
      title: titles[error.kind] || "You could not join the meeting",
      text: error.message,
      actions: [
        { label: "Try again", primary: true, onClick: () => joinPage(meeting.uuid), id: "retry" },
        { label: "Back to my meetings", href: "#/", id: "home" },
      ],
    });
  }
  state.call = call;
  window.__meeting = { call, role: "user" }; // read by the browser tests and the bench
  const panels = [];
  let lobby = null;
  if (state.events && meeting.owner_uuids.includes(state.me.uuid)) {
    lobby = new Lobby(session.api, meeting, state.events, "stage");
    lobby.refresh();
    panels.push(lobby.element);
  }
  const owner = meeting.owner_uuids.includes(state.me.uuid);
  const participants = `/api/calld/1.0/users/me/meetings/${meeting.uuid}/participants`;
  state.view = renderMeeting(root, {
    call,
    title: meeting.name,
    myName: fullName(state.me),
    micOn: choice.micOn,
    camOn: choice.camOn,
    panels,
    inviteLink: guestLink(meeting),
    host: owner
      ? {
          mute: (id, muted) => session.api.put(`${participants}/${encodeURIComponent(id)}/${muted ? "mute" : "unmute"}`),
          remove: (id) => session.api.delete(`${participants}/${encodeURIComponent(id)}`),
          endForAll: () => session.api.delete(`/api/confd/1.1/users/me/meetings/${meeting.uuid}`),
        }
      : null,
    onLeave: () => call.leave(),
  });
  if (lobby) lobby.addEventListener("change", (event) => event.detail > 0 && state.view && state.view.openSide());
  document.title = meeting.name;
  call.addEventListener("ended", (event) => {
    const { reason, text } = event.detail;
    if (state.view) state.view.destroy();
    state.view = null;
    state.call = null;
    if (lobby) lobby.destroy();
    stopStream(choice.stream);
    window.__meeting = { ...(window.__meeting || {}), ended: { reason, text } };
    if (!session.data) return signInPage("Your session has expired. Sign in again.");
    endedPage(root, {
      reason,
      text,
      meetingName: meeting.name,
      rejoin: () => joinPage(meeting.uuid),
      home: { label: "Back to my meetings", href: "#/" },
    });
  });
}

// --- routing

function route() {
  if (!session.data) return signInPage();
  if (state.call && !state.call.ended) {
    state.call.leave();
  }
  const match = /^#\/meetings\/([0-9a-fA-F-]{36})/.exec(window.location.hash);
  if (match) return joinPage(match[1]);
  if (window.location.hash === "#/live") return livePage();
  return listPage();
}

window.addEventListener("hashchange", () => {
  if (session.data && state.me) route();
});

if (session.restore()) afterSignIn();
else signInPage();
