// The meeting stage, the same for users and guests: one tile per video slot (name + talking indicator), my own
// preview, mute and camera toggles, the participant list (plus any extra side panel, e.g. the owner's lobby), leave.

import { h, icon, initials, replace } from "./dom.js";
import { hasMicrophone, saveToggles } from "./media.js";

/**
 * @param {HTMLElement} root
 * @param {object} options
 * @param {import("./call.js").MeetingCall} options.call   an established call
 * @param {string} options.title                           the meeting's name
 * @param {string} options.myName
 * @param {boolean} options.micOn
 * @param {boolean} options.camOn
 * @param {HTMLElement[]} [options.panels]                 extra sections for the side panel
 * @param {() => void} options.onLeave
 */
export function renderMeeting(root, options) {
  const { call } = options;
  const state = { micOn: options.micOn !== false, camOn: options.camOn !== false, sideOpen: window.innerWidth > 820 };
  document.body.classList.add("in-meeting");
  call.setMicEnabled(state.micOn);
  call.setCameraEnabled(state.camOn);

  const tiles = h("div.tiles", { id: "tiles", role: "list", "aria-label": "Participants' video" });
  const reconnecting = h(
    "div.reconnecting",
    { id: "reconnecting", role: "status", hidden: true },
    h("div.spinner", { role: "presentation" }),
    h("span", {}, "Reconnecting… the connection dropped; you will be back in a moment."),
  );
  const emptyState = h(
    "div.stage-empty",
    { id: "stage-empty" },
    h("div.spinner", { role: "presentation" }),
    h("h2", {}, "Waiting for others to join"),
    h("p", {}, "Share the meeting link: people appear here as soon as they join."),
  );

  const selfVideo = h("video", { autoplay: true, muted: true, playsInline: true, "aria-label": "Your camera" });
  selfVideo.muted = true;
  selfVideo.srcObject = call.localStream;
  const selfCamOff = h("div.cam-off", { hidden: true }, "Camera off");
  const selfMuted = h("span.muted-icon", { id: "self-muted", hidden: true, title: "You are muted" }, icon("micOff", "muted"));
  const selfView = h(
    "div.self-view",
    { id: "self-view" },
    selfVideo,
    selfCamOff,
    h("span.nameplate", {}, h("span", {}, `${options.myName || "You"} (you)`), selfMuted),
  );

  const micButton = h("button.round", { type: "button", id: "toggle-mic" });
  const camButton = h("button.round", { type: "button", id: "toggle-cam" });
  const countBadge = h("span.count", { "aria-hidden": "true" }, "1");
  const peopleButton = h(
    "button.round",
    { type: "button", id: "toggle-people", "aria-controls": "side", "aria-label": "Show participants" },
    icon("people"),
    countBadge,
  );
  const leaveButton = h(
    "button.round.leave",
    { type: "button", id: "leave", "aria-label": "Leave the meeting", title: "Leave" },
    icon("leave"),
  );

  const peopleList = h("ul.people", { id: "participants", "aria-live": "polite" });
  const peopleHeading = h("h2", { id: "people-title" }, "In the meeting");
  const closeSide = h(
    "button.btn.small.ghost.close-side",
    { type: "button", "aria-label": "Close the side panel", onclick: () => toggleSide(false) },
    icon("x"),
  );
  const side = h(
    "aside.side",
    { id: "side", "aria-label": "Participants and lobby" },
    h("section", {}, h("h2", {}, peopleHeading, closeSide), peopleList),
    options.panels || [],
  );
  const clock = h("span.clock", { "aria-label": "Time in the meeting" }, "00:00");

  const meeting = h(
    "div.meeting",
    { id: "meeting", "data-call-id": call.callId || "" },
    h("header.meeting-top", {}, h("span.brand-mark", {}, icon("logo")), h("h1", { id: "meeting-title" }, options.title), h("span.spacer", { style: "flex:1" }), clock),
    h("div.meeting-body", {}, h("main.stage", { id: "stage" }, reconnecting, tiles, emptyState, selfView), side),
    h("nav.controls", { "aria-label": "Call controls" }, micButton, camButton, peopleButton, leaveButton),
  );
  replace(root, meeting);

  function updateControls() {
    const hasMic = hasMicrophone(call.localStream);
    micButton.disabled = !hasMic;
    if (!hasMic) micButton.title = "No microphone";
    camButton.disabled = call.localStream.getVideoTracks().length === 0;
    micButton.replaceChildren(icon(state.micOn ? "mic" : "micOff"));
    micButton.setAttribute("aria-pressed", String(!state.micOn));
    micButton.setAttribute("aria-label", state.micOn ? "Mute microphone" : "Unmute microphone");
    if (hasMic) micButton.title = state.micOn ? "Mute" : "Unmute";
    micButton.classList.toggle("toggle-off", !state.micOn);
    camButton.replaceChildren(icon(state.camOn ? "cam" : "camOff"));
    camButton.setAttribute("aria-pressed", String(!state.camOn));
    camButton.setAttribute("aria-label", state.camOn ? "Turn camera off" : "Turn camera on");
    camButton.title = state.camOn ? "Camera off" : "Camera on";
    camButton.classList.toggle("toggle-off", !state.camOn);
    const hasCamera = call.localStream.getVideoTracks().length > 0;
    selfCamOff.hidden = state.camOn && hasCamera;
    selfMuted.hidden = state.micOn && hasMic;
    selfCamOff.textContent = hasCamera ? "Camera off" : "No camera";
    side.hidden = !state.sideOpen;
    peopleButton.setAttribute("aria-expanded", String(state.sideOpen));
    peopleButton.setAttribute("aria-label", state.sideOpen ? "Hide participants" : "Show participants");
  }

  function toggleSide(open = !state.sideOpen) {
    state.sideOpen = open;
    updateControls();
  }

  micButton.addEventListener("click", () => {
    state.micOn = !state.micOn;
    saveToggles(state); // the choice holds for the next join
    call.setMicEnabled(state.micOn);
    updateControls();
    renderPeople();
  });
  camButton.addEventListener("click", () => {
    state.camOn = !state.camOn;
    saveToggles(state);
    call.setCameraEnabled(state.camOn);
    updateControls();
  });
  peopleButton.addEventListener("click", () => toggleSide());
  leaveButton.addEventListener("click", () => options.onLeave());

  const tileByMid = new Map();

  function makeTile(slot) {
    const video = h("video", { autoplay: true, muted: true, playsInline: true });
    video.muted = true; // the sound comes mixed on the audio m-line, played by <audio> elements
    video.srcObject = slot.stream;
    const avatar = h("div.avatar", {}, h("span", {}, "?"));
    const name = h("span.name", {}, "Connecting…");
    const mutedIcon = h("span.muted-icon", { hidden: true, title: "Muted" }, icon("micOff", "muted"));
    const tile = h(
      "div.tile",
      { role: "listitem", dataset: { mid: slot.mid } },
      video,
      avatar,
      h("div.nameplate", {}, h("span.talk-indicator", { "aria-hidden": "true" }, h("i"), h("i"), h("i")), name, mutedIcon),
    );
    // a camera turned off (told by the room) shows the avatar even while black frames still arrive
    const showVideo = () => {
      const person = call.participantFor(slot);
      tile.classList.toggle("has-video", !slot.track.muted && video.videoWidth > 0 && !(person && person.videoMuted));
    };
    video.addEventListener("resize", showVideo);
    video.addEventListener("loadeddata", showVideo);
    slot.track.addEventListener("mute", showVideo);
    slot.track.addEventListener("unmute", showVideo);
    video.play().catch(() => {});
    return { tile, video, avatar, name, mutedIcon, slot, showVideo };
  }

  function render() {
    const slots = [...call.slots.values()].sort((a, b) => a.mid.localeCompare(b.mid, undefined, { numeric: true }));
    // Slots the server has not assigned to anyone (video_slots: null) stay out of sight.
    const visible = slots.filter((slot) => !(slot.mid in call.slotMap) || call.slotMap[slot.mid] !== null);
    for (const [mid, entry] of tileByMid) {
      if (!visible.some((slot) => slot.mid === mid && slot === entry.slot)) {
        entry.video.srcObject = null;
        entry.tile.remove();
        tileByMid.delete(mid);
      }
    }
    for (const slot of visible) {
      let entry = tileByMid.get(slot.mid);
      if (!entry) {
        entry = makeTile(slot);
        tileByMid.set(slot.mid, entry);
      }
      tiles.append(entry.tile); // keeps the order of the mids
      const person = call.participantFor(slot);
      const label = person ? person.name : "Participant";
      entry.name.textContent = label;
      entry.avatar.firstChild.textContent = initials(label);
      entry.tile.dataset.participant = label;
      entry.tile.dataset.channel = person ? person.id : "";
      entry.tile.setAttribute("aria-label", `${label}${person && person.talking ? ", talking" : ""}`);
      entry.tile.classList.toggle("talking", Boolean(person && person.talking));
      entry.mutedIcon.hidden = !(person && person.muted);
      entry.tile.classList.toggle("camera-off", Boolean(person && person.videoMuted));
      entry.showVideo();
    }
    const count = visible.length;
    const wide = window.innerWidth >= window.innerHeight;
    const cols = count <= 1 ? 1 : count === 2 ? (wide ? 2 : 1) : count <= 4 ? 2 : count <= 9 ? 3 : 4;
    tiles.style.setProperty("--cols", String(cols));
    tiles.hidden = count === 0;
    emptyState.hidden = count > 0 || call.recovering; // while reconnecting, the banner says why the stage is empty
    renderPeople();
  }

  function renderPeople() {
    const people = [...call.participants.values()].sort((a, b) => (a.isMe === b.isMe ? a.name.localeCompare(b.name) : a.isMe ? -1 : 1));
    if (!people.some((p) => p.isMe)) people.unshift({ id: "me", name: options.myName || "You", isMe: true, talking: false, muted: !state.micOn });
    replace(
      peopleList,
      people.map((p) =>
        h(
          `li${p.talking ? ".talking" : ""}`,
          { dataset: { channel: p.id } },
          h("span.dot", { "aria-hidden": "true" }, initials(p.name)),
          h("span.who", {}, p.name, p.isMe ? h("span.you", {}, " (you)") : null),
          p.talking ? h("span.talk-indicator", { "aria-label": "talking" }, h("i"), h("i"), h("i")) : null,
          (p.isMe ? !state.micOn : p.muted) ? h("span.muted-icon", {}, icon("micOff", "muted")) : null,
        ),
      ),
    );
    countBadge.textContent = String(people.length);
    peopleHeading.textContent = `In the meeting (${people.length})`;
  }

  const started = call.joinedAt || Date.now();
  const timer = setInterval(() => {
    const seconds = Math.floor((Date.now() - started) / 1000);
    const hours = Math.floor(seconds / 3600);
    const mm = String(Math.floor((seconds % 3600) / 60)).padStart(2, "0");
    const ss = String(seconds % 60).padStart(2, "0");
    clock.textContent = hours ? `${hours}:${mm}:${ss}` : `${mm}:${ss}`;
  }, 1000);

  const onChange = () => render();
  let narrow = window.innerWidth <= 820;
  const onResize = () => {
    // Crossing to a phone's width closes the side panel (it covers the stage there); back to a desktop opens it.
    const nowNarrow = window.innerWidth <= 820;
    if (nowNarrow !== narrow) {
      narrow = nowNarrow;
      toggleSide(!narrow);
    }
    render();
  };
  const onReconnecting = () => {
    reconnecting.hidden = false;
    render();
  };
  const onReconnected = () => {
    reconnecting.hidden = true;
    meeting.dataset.callId = call.callId || "";
    render();
  };
  call.addEventListener("slots", onChange);
  call.addEventListener("participants", onChange);
  call.addEventListener("reconnecting", onReconnecting);
  call.addEventListener("reconnected", onReconnected);
  window.addEventListener("resize", onResize);
  updateControls();
  render();

  return {
    destroy() {
      clearInterval(timer);
      call.removeEventListener("slots", onChange);
      call.removeEventListener("participants", onChange);
      call.removeEventListener("reconnecting", onReconnecting);
      call.removeEventListener("reconnected", onReconnected);
      window.removeEventListener("resize", onResize);
      document.body.classList.remove("in-meeting");
    },
    openSide: () => toggleSide(true),
  };
}
