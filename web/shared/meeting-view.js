// The meeting stage, the same for users and guests: one tile per video slot (name + talking indicator), my own
// preview, mute and camera toggles, the participant list (plus any extra side panel, e.g. the owner's lobby), leave.

import { arrange, h, icon, initials, replace, toast } from "./dom.js";
import { hasMicrophone, saveToggles, watchLevel } from "./media.js";
import { gridCapacity, gridFit } from "./stage-layout.js";
import { deviceSettings } from "./device-settings.js";

/**
 * @param {HTMLElement} root
 * @param {object} options
 * @param {import("./call.js").MeetingCall} options.call   an established call
 * @param {string} options.title                           the meeting's name
 * @param {string} options.myName
 * @param {boolean} options.micOn
 * @param {boolean} options.camOn
 * @param {HTMLElement[]} [options.panels]                 extra sections for the side panel
 * @param {string} [options.inviteLink]                    the guest link the Invite button copies
 * @param {{mute: (id: string, muted: boolean) => Promise<void>, remove: (id: string) => Promise<void>,
 *          endForAll: () => Promise<void>}} [options.host] the organiser's controls (owners only)
 * @param {() => void} options.onLeave
 */
export function renderMeeting(root, options) {
  const { call } = options;
  const state = {
    micOn: options.micOn !== false,
    camOn: options.camOn !== false,
    sideOpen: window.innerWidth > 820,
    layout: "grid", // or "speaker": the speaker (or whoever is pinned) large, the others in a strip
    pinned: null, // the channel id whose tile stays large (and whose video the server keeps in a slot)
    speaker: null, // the last one who talked
    hand: false,
    chatOpen: false,
    settingsOpen: false,
    unread: 0,
  };
  document.body.classList.add("in-meeting");
  call.setMicEnabled(state.micOn);
  call.setCameraEnabled(state.camOn);

  const tiles = h("div.tiles.grid", { id: "tiles", role: "list", "aria-label": "Participants" });
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
    "div.tile.self-view.self",
    { id: "self-view", role: "listitem", "data-participant": options.myName || "You" },
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

  const handButton = h("button.round", { type: "button", id: "toggle-hand" }, icon("hand"));
  // phones' browsers cannot share a screen: no button there
  const canShare =
    Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia) && !window.matchMedia("(pointer: coarse)").matches;
  const shareButton = canShare ? h("button.round", { type: "button", id: "toggle-share" }, icon("screen")) : null;
  const stopShare = h("button.btn.small.danger", { type: "button", id: "stop-share" }, "Stop presenting");
  const presentingBar = h(
    "div.presenting-bar",
    { id: "presenting-bar", role: "status", hidden: true },
    icon("screen"),
    h("span", {}, "You are presenting to everyone"),
    stopShare,
  );
  const chatBadge = h("span.count", { "aria-hidden": "true", hidden: true }, "");
  const chatButton = h(
    "button.round",
    { type: "button", id: "toggle-chat", "aria-controls": "chat", "aria-label": "Chat", title: "Chat" },
    icon("chat"),
    chatBadge,
  );
  const inviteButton = options.inviteLink
    ? h("button.btn.small.ghost", { type: "button", id: "invite", title: "Copy the link guests open" }, icon("link"), "Invite")
    : null;

  const settings = deviceSettings(call);
  const settingsButton = h(
    "button.btn.small.ghost",
    { type: "button", id: "open-settings", "aria-controls": "settings", title: "Microphone, camera and speaker" },
    icon("settings"),
    h("span.label", {}, "Devices"),
  );
  const chatLog = h("ol.chat-log", { id: "chat-log", "aria-live": "polite" });
  const chatInput = h("input", { type: "text", id: "chat-input", maxlength: "2000", placeholder: "Message everyone", autocomplete: "off" });
  const chatForm = h("form.chat-form", {}, chatInput, h("button.btn.small.primary", { type: "submit", id: "chat-send" }, "Send"));
  const chatSection = h("section.chat", { id: "chat", hidden: true }, h("h2", {}, "Chat"), chatLog, chatForm);
  const endForAll = options.host
    ? h("button.btn.small.ghost.danger-text", { type: "button", id: "end-for-all" }, "End the meeting for all")
    : null;

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
    h("section", {}, h("h2", {}, peopleHeading, closeSide), peopleList, endForAll),
    settings.element,
    chatSection,
    options.panels || [],
  );
  const clock = h("span.clock", { "aria-label": "Time in the meeting" }, "00:00");

  const stage = h("main.stage", { id: "stage" }, reconnecting, presentingBar, tiles, emptyState);
  const layoutButton = h("button.round", { type: "button", id: "toggle-layout" });
  layoutButton.addEventListener("click", () => {
    state.layout = state.layout === "speaker" ? "grid" : "speaker";
    updateControls();
    render();
  });

  const meeting = h(
    "div.meeting",
    { id: "meeting", "data-call-id": call.callId || "" },
    h("header.meeting-top", {}, h("span.brand-mark", {}, icon("logo")), h("h1", { id: "meeting-title" }, options.title), h("span.spacer", { style: "flex:1" }), settingsButton, inviteButton, clock),
    h("div.meeting-body", {}, stage, side),
    h(
      "nav.controls",
      { "aria-label": "Call controls" },
      micButton,
      camButton,
      handButton,
      shareButton,
      layoutButton,
      chatButton,
      peopleButton,
      leaveButton,
    ),
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
    handButton.setAttribute("aria-pressed", String(state.hand));
    handButton.setAttribute("aria-label", state.hand ? "Lower your hand" : "Raise your hand");
    handButton.title = state.hand ? "Lower hand" : "Raise hand";
    handButton.classList.toggle("active", state.hand);
    const sharing = Boolean(call.screenTrack);
    presentingBar.hidden = !sharing;
    stage.classList.toggle("sharing", sharing); // the bar keeps clear of the tiles
    if (shareButton) {
      shareButton.setAttribute("aria-pressed", String(sharing));
      shareButton.setAttribute("aria-label", sharing ? "Stop presenting" : "Present your screen");
      shareButton.title = sharing ? "Stop presenting" : "Present";
      shareButton.classList.toggle("active", sharing);
    }
    chatSection.hidden = !state.chatOpen;
    settings.element.hidden = !state.settingsOpen;
    settingsButton.setAttribute("aria-expanded", String(state.settingsOpen));
    chatButton.setAttribute("aria-expanded", String(state.chatOpen));
    chatBadge.hidden = !state.unread;
    chatBadge.textContent = String(state.unread);
    const speaker = state.layout === "speaker";
    layoutButton.replaceChildren(icon(speaker ? "grid" : "speaker"));
    layoutButton.setAttribute("aria-label", speaker ? "Show everyone in a grid" : "Show the speaker large");
    layoutButton.title = speaker ? "Grid view" : "Speaker view";
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
  handButton.addEventListener("click", () => {
    state.hand = !state.hand;
    call.setHandRaised(state.hand);
    updateControls();
    renderPeople();
  });
  const toggleShare = async () => {
    if (call.screenTrack) return call.stopScreenShare();
    try {
      await call.startScreenShare();
    } catch (error) {
      if (error && error.name === "NotAllowedError") return; // the person closed the browser's picker
      toast(`Your screen cannot be shared: ${error.message || error}`);
    }
  };
  if (shareButton) shareButton.addEventListener("click", toggleShare);
  stopShare.addEventListener("click", () => call.stopScreenShare());
  settingsButton.addEventListener("click", () => {
    state.settingsOpen = !state.settingsOpen;
    if (state.settingsOpen) {
      toggleSide(true);
      settings.refresh().catch(() => {});
    }
    updateControls();
  });
  chatButton.addEventListener("click", () => {
    state.chatOpen = !state.chatOpen;
    if (state.chatOpen) {
      state.unread = 0;
      toggleSide(true);
      chatInput.focus();
    }
    updateControls();
  });
  chatForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = chatInput.value.trim();
    if (!text) return;
    call.sendChat(text);
    chatInput.value = "";
  });
  if (inviteButton) {
    inviteButton.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(options.inviteLink);
        toast("Link copied: send it to the people you invite");
      } catch {
        window.prompt("Copy this link and send it:", options.inviteLink);
      }
    });
  }
  if (endForAll) {
    endForAll.addEventListener("click", async () => {
      if (!window.confirm("End the meeting for everyone? The meeting is deleted and everyone is hung up.")) return;
      await options.host.endForAll().catch((error) => toast(`Could not end the meeting: ${error.message}`));
    });
  }

  function renderChat() {
    replace(
      chatLog,
      call.chat.map((line) =>
        h(
          `li${line.mine ? ".mine" : ""}`,
          {},
          h("span.chat-who", {}, line.mine ? "You" : line.name),
          h("span.chat-time", {}, new Date(line.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
          h("p", {}, line.text),
        ),
      ),
    );
    chatLog.scrollTop = chatLog.scrollHeight;
  }
  const onChat = () => {
    const last = call.chat[call.chat.length - 1];
    if (!state.chatOpen && last && !last.mine) {
      state.unread += 1;
      toast(`${last.name}: ${last.text.slice(0, 80)}`);
    }
    renderChat();
    updateControls();
  };
  leaveButton.addEventListener("click", () => options.onLeave());

  // --- the stage: a tile for everyone (video where a slot shows him, his initials otherwise), yours included

  const tileByKey = new Map(); // "c:<channel>" | "m:<mid>" (a slot whose person is not known yet) -> entry
  const overflow = h("button.tile.overflow", { type: "button", id: "overflow", "aria-label": "Show everyone" }, h("span", {}, ""));
  overflow.addEventListener("click", () => toggleSide(true));
  const strip = h("div.strip", { id: "strip", role: "list", "aria-label": "Others" });
  const selfEntry = { key: "self", tile: selfView, video: selfVideo };

  function makeTile(key) {
    const video = h("video", { autoplay: true, muted: true, playsInline: true });
    video.muted = true; // the sound comes mixed on the audio m-line, played by <audio> elements
    const avatar = h("div.avatar", {}, h("span", {}, "?"));
    const name = h("span.name", {}, "Connecting…");
    const mutedIcon = h("span.muted-icon", { hidden: true, title: "Muted" }, icon("micOff", "muted"));
    const handIcon = h("span.hand-icon", { hidden: true, title: "Hand raised" }, icon("hand"));
    const pin = h("button.pin", { type: "button", "aria-pressed": "false" }, icon("pin"));
    const tile = h(
      "div.tile",
      { role: "listitem" },
      video,
      avatar,
      pin,
      h("div.nameplate", {}, h("span.talk-indicator", { "aria-hidden": "true" }, h("i"), h("i"), h("i")), name, handIcon, mutedIcon),
    );
    const entry = { key, tile, video, avatar, name, mutedIcon, handIcon, pin, slot: null, person: null };
    // a camera turned off (told by the room) shows the avatar even while black frames still arrive
    entry.showVideo = () => {
      const slot = entry.slot;
      const cameraOff = !entry.screen && entry.person && entry.person.videoMuted;
      const on = Boolean(slot && !slot.track.muted && video.videoWidth > 0 && !cameraOff);
      tile.classList.toggle("has-video", on);
    };
    video.addEventListener("resize", entry.showVideo);
    video.addEventListener("loadeddata", entry.showVideo);
    pin.addEventListener("click", () => setPinned(state.pinned === entry.personId ? null : entry.personId));
    return entry;
  }

  function attachSlot(entry, slot) {
    if (entry.slot === slot) return;
    if (entry.slot) {
      entry.slot.track.removeEventListener("mute", entry.showVideo);
      entry.slot.track.removeEventListener("unmute", entry.showVideo);
    }
    entry.slot = slot;
    entry.video.srcObject = slot ? slot.stream : null;
    if (slot) {
      entry.tile.dataset.mid = slot.mid;
      slot.track.addEventListener("mute", entry.showVideo);
      slot.track.addEventListener("unmute", entry.showVideo);
    } else {
      delete entry.tile.dataset.mid;
    }
  }

  /** The screens others present (one tile each, first), then everyone but me, each once: those a slot shows (by
   * slot order), then the others by name. */
  function remoteEntries() {
    const shown = [...call.slots.values()]
      .filter((slot) => !(slot.mid in call.slotMap) || call.slotMap[slot.mid] !== null)
      .sort((a, b) => a.mid.localeCompare(b.mid, undefined, { numeric: true }))
      .filter((slot) => !slot.screen);
    const wanted = call.presenters().map(({ person, slot }) => ({ key: `s:${slot.mid}`, person, slot, screen: true }));
    const slotOf = new Map();
    for (const slot of shown) {
      const person = call.participantFor(slot);
      if (person && person.isMe) continue;
      if (person) slotOf.set(person.id, slot);
      else wanted.push({ key: `m:${slot.mid}`, person: null, slot }); // the room's messages will name him
    }
    const others = [...call.participants.values()].filter((p) => !p.isMe);
    const withVideo = [...slotOf.keys()].map((id) => call.participants.get(id)).filter(Boolean);
    const without = others.filter((p) => !slotOf.has(p.id)).sort((a, b) => a.name.localeCompare(b.name));
    for (const person of [...withVideo, ...without]) wanted.push({ key: `c:${person.id}`, person, slot: slotOf.get(person.id) || null });
    return wanted;
  }

  function updateEntry(entry, person, slot, screen = false) {
    entry.person = person;
    entry.personId = person ? person.id : null;
    entry.screen = screen;
    attachSlot(entry, slot);
    if (screen) return updateScreenEntry(entry, person);
    const label = person ? person.name : "Participant";
    entry.name.textContent = label;
    entry.avatar.firstChild.textContent = initials(label);
    entry.tile.dataset.participant = label;
    entry.tile.dataset.channel = person ? person.id : "";
    const talking = Boolean(person && person.talking && !person.muted);
    entry.tile.setAttribute("aria-label", `${label}${talking ? ", talking" : ""}`);
    entry.tile.classList.toggle("talking", talking);
    entry.tile.classList.toggle("camera-off", Boolean(person && person.videoMuted));
    entry.tile.classList.toggle("pinned", Boolean(person && state.pinned === person.id));
    entry.mutedIcon.hidden = !(person && person.muted);
    entry.handIcon.hidden = !(person && person.handRaised);
    entry.pin.hidden = !person;
    entry.pin.setAttribute("aria-pressed", String(Boolean(person && state.pinned === person.id)));
    entry.pin.setAttribute("aria-label", person && state.pinned === person.id ? `Unpin ${label}` : `Pin ${label}`);
    entry.showVideo();
    showPaused(entry, call.isPaused(slot));
  }

  /** A slot the server paused (the link has no room for it): an overlay says so, instead of a frozen picture. */
  function showPaused(entry, paused) {
    if (paused && !entry.pausedNote) {
      entry.pausedNote = h("div.paused-note", { role: "status" }, "Paused — weak connection");
      entry.tile.append(entry.pausedNote);
    }
    entry.tile.classList.toggle("paused", paused);
    if (entry.pausedNote) entry.pausedNote.hidden = !paused;
  }

  /** A presented screen: the presenter's name on it, no pin (it is always large), no camera state. */
  function updateScreenEntry(entry, person) {
    const label = `${person.name} is presenting`;
    entry.name.textContent = label;
    entry.avatar.firstChild.textContent = initials(person.name);
    entry.tile.classList.add("screen");
    entry.tile.dataset.presenter = person.name;
    entry.tile.setAttribute("aria-label", label);
    entry.mutedIcon.hidden = true;
    entry.handIcon.hidden = true;
    entry.pin.hidden = true;
    entry.showVideo();
  }

  function setPinned(channelId) {
    state.pinned = channelId;
    if (channelId) state.layout = "speaker";
    call.pin(channelId); // the server keeps his video in one of my slots, whoever speaks
    updateControls();
    render();
  }

  function render() {
    const wanted = remoteEntries();
    const keys = new Set(wanted.map((w) => w.key));
    for (const [key, entry] of tileByKey) {
      if (!keys.has(key)) {
        attachSlot(entry, null);
        entry.tile.remove();
        tileByKey.delete(key);
      }
    }
    if (state.pinned && !call.participants.has(state.pinned)) state.pinned = null; // he left
    for (const person of call.participants.values()) if (person.talking && !person.isMe) state.speaker = person.id;
    const entries = wanted.map(({ key, person, slot, screen }) => {
      let entry = tileByKey.get(key);
      if (!entry) {
        entry = makeTile(key);
        tileByKey.set(key, entry);
      }
      updateEntry(entry, person, slot, screen);
      return entry;
    });
    // a presented screen takes the stage, whatever the layout; the others (the presenter's camera too) in the strip
    const presented = entries.find((entry) => entry.screen) || null;
    const speakerView = state.layout === "speaker" || presented !== null;
    tiles.classList.toggle("speaker", speakerView);
    tiles.classList.toggle("grid", !speakerView);
    tiles.classList.toggle("presenting", presented !== null);
    if (speakerView && entries.length) layoutSpeaker(entries, presented);
    else layoutGrid(entries);
    for (const entry of [...entries, selfEntry]) {
      if (entry.video.srcObject && entry.video.paused) entry.video.play().catch(() => {}); // moved nodes pause
    }
    emptyState.hidden = entries.length > 0 || call.recovering; // while reconnecting, the banner says why
    renderPeople();
  }

  function layoutGrid(entries) {
    const width = stage.clientWidth - 24;
    const height = stage.clientHeight - 24 - (parseFloat(getComputedStyle(tiles).marginTop) || 0); // the presenting bar's room
    const all = [...entries, selfEntry];
    const capacity = gridCapacity(width, height);
    let shown = all;
    if (all.length > capacity) {
      // the pinned and the talking first, then those with video; one place for "+N", and mine always
      const rank = (entry) => (entry.personId === state.pinned ? 0 : entry.person && entry.person.talking ? 1 : entry.slot ? 2 : 3);
      const kept = [...entries].sort((a, b) => rank(a) - rank(b)).slice(0, Math.max(0, capacity - 2));
      shown = [...entries.filter((entry) => kept.includes(entry)), selfEntry];
      overflow.firstChild.textContent = `+${all.length - shown.length}`;
      overflow.setAttribute("aria-label", `${all.length - shown.length} more: show everyone`);
    }
    const placed = shown.length + (shown.length < all.length ? 1 : 0);
    const fit = gridFit(placed, width, height);
    tiles.style.setProperty("--tile-w", `${fit.tileWidth}px`);
    const children = shown.map((entry) => entry.tile);
    if (shown.length < all.length) children.splice(children.length - 1, 0, overflow);
    arrange(tiles, children);
    for (const entry of entries) entry.tile.classList.remove("main");
  }

  function layoutSpeaker(entries, presented = null) {
    const main =
      presented ||
      entries.find((entry) => entry.personId && entry.personId === state.pinned) ||
      entries.find((entry) => entry.personId && entry.personId === state.speaker) ||
      entries.find((entry) => entry.slot) ||
      entries[0];
    for (const entry of entries) entry.tile.classList.toggle("main", entry === main);
    arrange(strip, [...entries.filter((entry) => entry !== main).map((entry) => entry.tile), selfView]);
    arrange(tiles, [main.tile, strip]);
  }

  function renderPeople() {
    const people = [...call.participants.values()].sort((a, b) => (a.isMe === b.isMe ? a.name.localeCompare(b.name) : a.isMe ? -1 : 1));
    if (!people.some((p) => p.isMe)) people.unshift({ id: "me", name: options.myName || "You", isMe: true, talking: false, muted: !state.micOn });
    const host = options.host;
    const presenting = new Set(call.presenters().map(({ person }) => person.id));
    replace(
      peopleList,
      people.map((p) => {
        // a muted row never shows talking: the server's word on it can lag the mute by a moment
        const muted = p.isMe ? !state.micOn : p.muted;
        const talking = p.talking && !muted;
        return h(
          `li${talking ? ".talking" : ""}`,
          { dataset: { channel: p.id } },
          h("span.dot", { "aria-hidden": "true" }, initials(p.name)),
          h("span.who", {}, p.name, p.isMe ? h("span.you", {}, " (you)") : null),
          (p.isMe ? call.screenTrack : presenting.has(p.id)) ? h("span.present-icon", { title: "Presenting", "aria-label": "presenting" }, icon("screen")) : null,
          (p.isMe ? state.hand : p.handRaised) ? h("span.hand-icon", { title: "Hand raised", "aria-label": "hand raised" }, icon("hand")) : null,
          talking ? h("span.talk-indicator", { "aria-label": "talking" }, h("i"), h("i"), h("i")) : null,
          muted ? h("span.muted-icon", {}, icon("micOff", "muted")) : null,
          host && !p.isMe
            ? h(
                "span.host-actions",
                {},
                h(
                  "button.btn.small.ghost",
                  { type: "button", "data-action": p.muted ? "unmute" : "mute", onclick: () => host.mute(p.id, !p.muted).catch((error) => toast(error.message)) },
                  p.muted ? "Unmute" : "Mute",
                ),
                h(
                  "button.btn.small.ghost.danger-text",
                  { type: "button", "data-action": "remove", onclick: () => host.remove(p.id).catch((error) => toast(error.message)) },
                  "Remove",
                ),
              )
            : null,
        );
      }),
    );
    countBadge.textContent = String(people.length);
    peopleHeading.textContent = `In the meeting (${people.length})`;
  }

  // Speaking while muted: say so (from a copy of the microphone's track, since the muted one carries silence).
  const mutedHint = () => {
    const track = call.localStream.getAudioTracks()[0];
    if (!track || !hasMicrophone(call.localStream)) return () => {};
    const probe = track.clone();
    probe.enabled = true;
    let loud = []; // when the level was high lately (speech comes in bursts: syllables, not a steady tone)
    let lastHint = 0;
    const stop = watchLevel(new MediaStream([probe]), (level) => {
      const now = Date.now();
      loud = loud.filter((when) => now - when < 2500);
      if (state.micOn) loud = [];
      else if (level > 0.2) loud.push(now);
      if (loud.length >= 3 && now - lastHint > 15000) {
        lastHint = now;
        toast("You are muted: turn your microphone on to be heard");
      }
    });
    return () => {
      stop();
      probe.stop();
    };
  };
  let stopMutedHint = mutedHint();
  const onDevices = () => {
    // the self view and the muted hint follow the new camera and microphone
    selfVideo.srcObject = null;
    selfVideo.srcObject = call.localStream;
    selfVideo.play().catch(() => {});
    stopMutedHint();
    stopMutedHint = mutedHint();
  };

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
  call.addEventListener("chat", onChat);
  const onScreen = () => {
    updateControls(); // first: the presenting bar's room changes the grid
    render();
  };
  call.addEventListener("screen", onScreen);
  call.addEventListener("devices", onDevices);
  call.addEventListener("reconnected", onReconnected);
  window.addEventListener("resize", onResize);
  const stageSize = new ResizeObserver(() => render()); // the side panel opening resizes the stage too
  stageSize.observe(stage);
  updateControls();
  render();

  return {
    destroy() {
      clearInterval(timer);
      call.removeEventListener("slots", onChange);
      call.removeEventListener("participants", onChange);
      call.removeEventListener("reconnecting", onReconnecting);
      call.removeEventListener("chat", onChat);
      call.removeEventListener("screen", onScreen);
      call.removeEventListener("devices", onDevices);
      settings.destroy();
      stopMutedHint();
      call.removeEventListener("reconnected", onReconnected);
      window.removeEventListener("resize", onResize);
      stageSize.disconnect();
      document.body.classList.remove("in-meeting");
    },
    openSide: () => toggleSide(true),
  };
}
