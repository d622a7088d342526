// The devices panel of the meeting: microphone, camera and speaker, switched at once during the call (the senders'
// tracks are replaced, nothing is renegotiated) and remembered for the next join (media.js keeps the choice).

import { h, replace, toast } from "./dom.js";
import {
  canChooseSpeaker,
  cameraConstraints,
  hasMicrophone,
  listDevices,
  microphoneConstraints,
  saveDevices,
  savedDevices,
} from "./media.js";

/**
 * @param {import("./call.js").MeetingCall} call
 * @returns {{element: HTMLElement, refresh: () => Promise<void>, destroy: () => void}}
 */
export function deviceSettings(call) {
  const mic = h("select", { id: "settings-mic" });
  const cam = h("select", { id: "settings-cam" });
  const speaker = h("select", { id: "settings-speaker" });
  const speakerField = h("label.field", { for: "settings-speaker" }, h("span", {}, "Speaker"), speaker);
  speakerField.hidden = !canChooseSpeaker();
  const element = h(
    "section.device-settings",
    { id: "settings", hidden: true, "aria-labelledby": "settings-title" },
    h("h2", { id: "settings-title" }, "Devices"),
    h("label.field", { for: "settings-mic" }, h("span", {}, "Microphone"), mic),
    h("label.field", { for: "settings-cam" }, h("span", {}, "Camera"), cam),
    speakerField,
    h("p.small.settings-note", {}, "Changes apply at once and are kept for your next meeting."),
  );

  const currentId = (track) => (track && track.getSettings().deviceId) || "";

  function fill(select, devices, selected, what) {
    replace(
      select,
      devices.length
        ? devices.map((device, index) =>
            h("option", { value: device.deviceId, selected: device.deviceId === selected }, device.label || `${what} ${index + 1}`),
          )
        : [h("option", { value: "" }, `No ${what.toLowerCase()} found`)],
    );
    select.disabled = devices.length === 0;
  }

  async function refresh() {
    const { audio, video, speakers } = await listDevices();
    const stream = call.localStream;
    // a person who joined without a microphone (or camera) has no sender to switch: he rejoins to use one
    fill(mic, hasMicrophone(stream) ? audio : [], currentId(stream.getAudioTracks()[0]), "Microphone");
    fill(cam, stream.getVideoTracks().length ? video : [], currentId(stream.getVideoTracks()[0]), "Camera");
    fill(speaker, speakers, call.speakerId || savedDevices().speakerId || "default", "Speaker");
  }

  async function switchTo(kind, deviceId) {
    const constraints = kind === "audio" ? { audio: microphoneConstraints(deviceId) } : { video: cameraConstraints(deviceId) };
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      await call.replaceLocalTrack(stream.getTracks()[0]);
      saveDevices({ ...savedDevices(), [kind === "audio" ? "audioId" : "videoId"]: deviceId });
    } catch (error) {
      toast(`That ${kind === "audio" ? "microphone" : "camera"} cannot be used: ${error.message || error.name}`);
      await refresh();
    }
  }

  mic.addEventListener("change", () => switchTo("audio", mic.value));
  cam.addEventListener("change", () => switchTo("video", cam.value));
  speaker.addEventListener("change", () => {
    call.setSpeaker(speaker.value);
    saveDevices({ ...savedDevices(), speakerId: speaker.value });
  });
  const onDeviceChange = () => refresh().catch(() => {});
  navigator.mediaDevices.addEventListener("devicechange", onDeviceChange);
  if (savedDevices().speakerId) call.setSpeaker(savedDevices().speakerId); // chosen in an earlier meeting

  return {
    element,
    refresh,
    destroy: () => navigator.mediaDevices.removeEventListener("devicechange", onDeviceChange),
  };
}
