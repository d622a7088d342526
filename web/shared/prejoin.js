// The screen before joining: camera preview, microphone level, device choice, mic/camera toggles, (guest) name.

import { h, icon, replace } from "./dom.js";
import {
  hasMicrophone,
  joiningWith,
  listDevices,
  missingFrom,
  openLocalMedia,
  saveDevices,
  savedDevices,
  saveToggles,
  savedToggles,
  stopStream,
  watchLevel,
} from "./media.js";
import { showMessage, topbar } from "./pages.js";
import { mark } from "./marks.js";

/**
 * @param {HTMLElement} root
 * @param {object} options
 * @param {string} options.meetingName
 * @param {string} [options.subtitle]
 * @param {boolean} [options.askName]  guests give the name the others will see
 * @param {string} [options.name]      pre-filled name
 * @param {string} [options.joinLabel]
 * @param {Node[]} [options.topRight]  elements for the top bar
 * @param {(choice: {name: string, stream: MediaStream, micOn: boolean, camOn: boolean}) => Promise<void>} options.onJoin
 * @param {() => void} [options.onBack]
 * @param {Promise<MediaStream>} [options.media] camera and microphone the page has already started opening (used
 *   once, for the first preview; a failure falls back to opening them here)
 */
export function renderPrejoin(root, options) {
  // the person's last choice (microphone or camera off) holds for the next join
  const state = { stream: null, ...savedToggles(), stopMeter: () => {}, busy: false, closed: false, opening: null };
  document.body.classList.remove("in-meeting");

  const video = h("video", { autoplay: true, muted: true, playsInline: true, "aria-label": "Your camera preview" });
  video.muted = true;
  const camOffNote = h("div.preview-off", { hidden: true }, h("p", {}, "Your camera is off"));
  const micButton = h(
    "button.round",
    { type: "button", id: "prejoin-mic", "aria-pressed": "false", "aria-label": "Turn microphone off" },
    icon("mic"),
  );
  const camButton = h(
    "button.round",
    { type: "button", id: "prejoin-cam", "aria-pressed": "false", "aria-label": "Turn camera off" },
    icon("cam"),
  );
  const preview = h(
    "div.preview",
    {},
    video,
    camOffNote,
    h("div.preview-controls", {}, micButton, camButton),
  );
  const meterBar = h("div");
  const meter = h("div.meter", { role: "meter", "aria-label": "Microphone level", "aria-valuemin": "0", "aria-valuemax": "100" }, meterBar);

  const audioSelect = h("select", { id: "audio-device" });
  const videoSelect = h("select", { id: "video-device" });
  const nameInput = h("input", {
    type: "text",
    id: "guest-name",
    name: "name",
    autocomplete: "name",
    maxlength: "64",
    required: true,
    placeholder: "e.g. Alex Martin",
    value: options.name || "",
  });
  const error = h("div.alert.error", { role: "alert", hidden: true });
  const deviceNote = h("div.alert.info", { role: "status", id: "media-note", hidden: true });
  const joinButton = h("button.btn.primary.block", { type: "submit", id: "join" }, options.joinLabel || "Join now");
  const form = h(
    "form.card.stack",
    { novalidate: true, "aria-labelledby": "prejoin-title" },
    h("div", {}, h("p.muted.small", {}, options.subtitle || "Ready to join?"), h("h1", { id: "prejoin-title" }, options.meetingName)),
    options.askName ? h("label.field", { for: "guest-name" }, h("span", {}, "Your name"), nameInput) : null,
    h("label.field", { for: "audio-device" }, h("span", {}, "Microphone"), audioSelect),
    meter,
    h("label.field", { for: "video-device" }, h("span", {}, "Camera"), videoSelect),
    deviceNote,
    error,
    joinButton,
    options.onBack ? h("button.btn.ghost.block", { type: "button", id: "back", onclick: () => close(options.onBack) }, "Back") : null,
    options.note || null,
  );

  replace(
    root,
    topbar({ right: options.topRight || [] }),
    h("main.page", {}, h("div.prejoin", {}, preview, form)),
  );

  function updateButtons() {
    const hasMic = Boolean(state.stream && hasMicrophone(state.stream));
    micButton.disabled = !hasMic;
    micButton.replaceChildren(icon(state.micOn && hasMic ? "mic" : "micOff"));
    micButton.setAttribute("aria-pressed", String(!state.micOn));
    micButton.setAttribute("aria-label", state.micOn ? "Turn microphone off" : "Turn microphone on");
    micButton.classList.toggle("toggle-off", !state.micOn);
    const hasCamera = Boolean(state.stream && state.stream.getVideoTracks().length > 0);
    camButton.disabled = !hasCamera;
    camButton.replaceChildren(icon(state.camOn && hasCamera ? "cam" : "camOff"));
    camButton.setAttribute("aria-pressed", String(!state.camOn));
    camButton.setAttribute("aria-label", state.camOn ? "Turn camera off" : "Turn camera on");
    camButton.classList.toggle("toggle-off", !state.camOn);
    camOffNote.hidden = state.camOn && hasCamera;
    const cameraProblem = state.stream && missingFrom(state.stream).video;
    camOffNote.firstChild.textContent = hasCamera ? "Your camera is off" : cameraProblem ? cameraProblem.title : "No camera";
    if (state.stream) {
      state.stream.getAudioTracks().forEach((t) => (t.enabled = state.micOn && hasMic));
      state.stream.getVideoTracks().forEach((t) => (t.enabled = state.camOn));
      const note = joiningWith(state.stream);
      deviceNote.textContent = note || "";
      deviceNote.hidden = !note;
    }
  }

  micButton.addEventListener("click", () => {
    state.micOn = !state.micOn;
    saveToggles(state);
    updateButtons();
  });
  camButton.addEventListener("click", () => {
    state.camOn = !state.camOn;
    saveToggles(state);
    updateButtons();
  });

  async function fillDevices() {
    const { audio, video: cameras } = await listDevices();
    const current = {
      audio: state.stream && state.stream.getAudioTracks()[0] && state.stream.getAudioTracks()[0].getSettings().deviceId,
      video: state.stream && state.stream.getVideoTracks()[0] && state.stream.getVideoTracks()[0].getSettings().deviceId,
    };
    const fill = (select, devices, selected, none) => {
      select.replaceChildren(
        ...(devices.length
          ? devices.map((d, i) => h("option", { value: d.deviceId, selected: d.deviceId === selected }, d.label || `${none} ${i + 1}`))
          : [h("option", { value: "" }, `No ${none.toLowerCase()} found`)]),
      );
      select.disabled = devices.length === 0;
    };
    fill(audioSelect, audio, current.audio, "Microphone");
    fill(videoSelect, cameras, current.video, "Camera");
  }

  async function open(devices, early = null) {
    state.stopMeter();
    stopStream(state.stream);
    state.stream = null;
    try {
      state.stream = early ? await early.catch(() => openLocalMedia(devices)) : await openLocalMedia(devices);
    } catch (problem) {
      if (state.closed) return;
      showMessage(root, {
        id: "media-error",
        tone: "error",
        iconName: "camOff",
        title: problem.title || "Camera and microphone could not start",
        text: problem.message,
        actions: [{ label: "Try again", primary: true, onClick: () => renderPrejoin(root, options), id: "retry-media" }],
      });
      return;
    }
    mark("media-ready");
    if (state.closed) {
      stopStream(state.stream);
      return;
    }
    video.srcObject = state.stream;
    state.stopMeter = watchLevel(state.stream, (level) => {
      meterBar.style.width = `${Math.round(level * 100)}%`;
      meter.setAttribute("aria-valuenow", String(Math.round(level * 100)));
    });
    updateButtons();
    fillDevices().catch(() => {}); // not awaited: Join waits for the stream only
  }

  const changeDevice = () => {
    const devices = { audioId: audioSelect.value || undefined, videoId: videoSelect.value || undefined };
    saveDevices({ ...savedDevices(), ...devices }); // the speaker chosen in a meeting stays
    state.opening = open(devices);
  };
  audioSelect.addEventListener("change", changeDevice);
  videoSelect.addEventListener("change", changeDevice);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    mark("join-submitted");
    if (state.busy) return;
    const name = nameInput.value.trim();
    if (options.askName && !name) {
      showError("Please enter your name: the others will see it.");
      nameInput.focus();
      return;
    }
    if (!state.stream && state.opening) await state.opening; // a quick click: wait for the devices
    if (!state.stream) {
      showError("This page cannot use a camera or a microphone (it must be opened over HTTPS).");
      return;
    }
    error.hidden = true;
    state.busy = true;
    joinButton.disabled = true;
    joinButton.textContent = "Joining…";
    try {
      state.stopMeter();
      const micOn = state.micOn && hasMicrophone(state.stream);
      await options.onJoin({ name, stream: state.stream, micOn, camOn: state.camOn });
    } finally {
      state.busy = false;
      joinButton.disabled = false;
      joinButton.textContent = options.joinLabel || "Join now";
    }
  });

  function showError(text) {
    error.textContent = text;
    error.hidden = false;
  }

  function close(then) {
    state.closed = true;
    state.stopMeter();
    stopStream(state.stream);
    then();
  }

  state.opening = open(savedDevices(), options.media || null);
  if (options.askName && !nameInput.value) nameInput.focus();

  return {
    showError,
    /** Stop the preview without joining (the page moves elsewhere). */
    close: () => {
      state.closed = true;
      state.stopMeter();
      stopStream(state.stream);
    },
  };
}
