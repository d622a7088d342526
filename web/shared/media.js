// Camera and microphone: getUserMedia with the chosen devices, device lists, and errors told in plain words.

export const PREFERRED_DEVICES_KEY = "meetings.devices";

export function savedDevices() {
  try {
    return JSON.parse(localStorage.getItem(PREFERRED_DEVICES_KEY) || "{}");
  } catch {
    return {};
  }
}

export function saveDevices(devices) {
  try {
    localStorage.setItem(PREFERRED_DEVICES_KEY, JSON.stringify(devices));
  } catch {
    /* private mode: the choice lasts for this page only */
  }
}

export class MediaProblem extends Error {
  constructor(kind, title, text) {
    super(text);
    this.kind = kind;
    this.title = title;
  }
}

/** The person's last microphone and camera choice (on or off), kept for the next join. */
export const PREFERRED_TOGGLES_KEY = "meetings.toggles";

export function savedToggles() {
  try {
    const saved = JSON.parse(localStorage.getItem(PREFERRED_TOGGLES_KEY) || "{}");
    return { micOn: saved.micOn !== false, camOn: saved.camOn !== false };
  } catch {
    return { micOn: true, camOn: true };
  }
}

export function saveToggles({ micOn, camOn }) {
  try {
    localStorage.setItem(PREFERRED_TOGGLES_KEY, JSON.stringify({ micOn, camOn }));
  } catch {
    /* private mode: the choice lasts for this page only */
  }
}

// What each opened stream lacks, and why: {audio: problem | null, video: problem | null}.
const missingDevices = new WeakMap();

/** What `stream` (from openLocalMedia) lacks: {audio, video}, each a MediaProblem or null. */
export function missingFrom(stream) {
  return missingDevices.get(stream) || { audio: null, video: null };
}

/** Whether the stream's audio is a real microphone (not the silent stand-in of a person without one). */
export function hasMicrophone(stream) {
  return !missingFrom(stream).audio && stream.getAudioTracks().length > 0;
}

/** getUserMedia's audio constraints for a microphone (the default one without an id). */
export function microphoneConstraints(audioId) {
  return audioId ? { deviceId: { exact: audioId } } : true;
}

/** getUserMedia's video constraints for a camera (the default one without an id): VGA is what the room forwards. */
export function cameraConstraints(videoId) {
  return {
    width: { ideal: 640 },
    height: { ideal: 480 },
    frameRate: { ideal: 24, max: 30 },
    ...(videoId ? { deviceId: { exact: videoId } } : {}),
  };
}

/**
 * Open whatever the person has and allows: camera and microphone, one of them, or neither (listen-only).
 * Never fails for a refused or missing device: the stream says what is missing (missingFrom), and a person without
 * a microphone gets a silent audio track, so the call still carries his audio m-line (he hears the others).
 */
export async function openLocalMedia({ audioId, videoId } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MediaProblem(
      "insecure",
      "Camera and microphone are not available",
      "This page must be opened over HTTPS (or on localhost) for the browser to allow a camera and a microphone.",
    );
  }
  const audio = microphoneConstraints(audioId);
  const video = cameraConstraints(videoId);
  const errors = { both: null, audio: null, video: null };
  let stream = null;
  for (const [kind, constraints] of [
    ["both", { audio, video }],
    ["audio", { audio, video: false }],
    ["video", { audio: false, video }],
  ]) {
    try {
      stream = await navigator.mediaDevices.getUserMedia(constraints);
      break;
    } catch (error) {
      if (error && error.name === "OverconstrainedError" && (audioId || videoId)) {
        return openLocalMedia({}); // the remembered device is gone: take the default ones
      }
      errors[kind] = error;
    }
  }
  stream = stream || new MediaStream();
  const missing = {
    // the camera failed if the pair failed and the microphone alone did not (or nothing worked)
    audio: stream.getAudioTracks().length ? null : describeMissing("audio", errors.audio || errors.both),
    video: stream.getVideoTracks().length ? null : describeMissing("video", errors.both || errors.video),
  };
  if (missing.audio) stream.addTrack(silentAudioTrack());
  missingDevices.set(stream, missing);
  return stream;
}

function describeMissing(kind, error) {
  const name = (error && error.name) || "NotFoundError";
  const device = kind === "audio" ? "microphone" : "camera";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return new MediaProblem("denied", `Your ${device} is blocked`, `Allow the ${device} (the icon in the address bar) and reload to use it.`);
  }
  if (name === "NotReadableError") {
    return new MediaProblem("busy", `Your ${device} is busy`, `Another application is using it.`);
  }
  return new MediaProblem("missing", `No ${device} found`, `Connect one and reload to use it.`);
}

/** A silent audio track: a person without a microphone still has an audio stream to receive the others on. */
function silentAudioTrack() {
  const context = new AudioContext();
  const destination = context.createMediaStreamDestination();
  const track = destination.stream.getAudioTracks()[0];
  track.enabled = false;
  track.addEventListener("ended", () => context.close().catch(() => {}));
  return track;
}

/** One sentence for the pre-join screen: how the person will join with what he has. */
export function joiningWith(stream) {
  const { audio, video } = missingFrom(stream);
  if (!audio && !video) return null;
  const why = [audio, video].filter(Boolean).map((problem) => problem.title).join(". ");
  if (audio && video) return `${why}. You will join listen-only: you will see and hear the others.`;
  if (audio) return `${why}. You will join without a microphone: the others will see you but not hear you.`;
  return `${why}. You will join with your microphone only.`;
}

export async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    audio: devices.filter((d) => d.kind === "audioinput"),
    video: devices.filter((d) => d.kind === "videoinput"),
    speakers: devices.filter((d) => d.kind === "audiooutput"),
  };
}

/** Whether this browser lets a page choose where sound plays (Chrome, Edge; not Safari or Firefox on phones). */
export function canChooseSpeaker() {
  return typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;
}

export function stopStream(stream) {
  if (stream) stream.getTracks().forEach((track) => track.stop());
}

/** A 0..1 level of the stream's microphone, for a meter; returns a stop function. */
export function watchLevel(stream, onLevel) {
  const track = stream.getAudioTracks()[0];
  if (!track || typeof AudioContext === "undefined") return () => {};
  const context = new AudioContext();
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  // A window longer than the 100 ms between reads, so a short sound (a syllable, the fake microphone's 20 ms beep)
  // is never missed between two reads.
  analyser.fftSize = 8192;
  source.connect(analyser);
  const data = new Uint8Array(analyser.fftSize);
  let running = true;
  const tick = () => {
    if (!running) return;
    analyser.getByteTimeDomainData(data);
    let peak = 0;
    for (const value of data) peak = Math.max(peak, Math.abs(value - 128));
    onLevel(Math.min(1, peak / 64));
    setTimeout(tick, 100);
  };
  tick();
  return () => {
    running = false;
    context.close().catch(() => {});
  };
}
