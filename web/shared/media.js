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

/** Ask for microphone and camera; fall back to the microphone alone when there is no camera. */
export async function openLocalMedia({ audioId, videoId } = {}) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MediaProblem(
      "insecure",
      "Camera and microphone are not available",
      "This page must be opened over HTTPS (or on localhost) for the browser to allow a camera and a microphone.",
    );
  }
  const audio = audioId ? { deviceId: { exact: audioId } } : true;
  const video = {
    width: { ideal: 640 },
    height: { ideal: 480 },
    frameRate: { ideal: 24, max: 30 },
    ...(videoId ? { deviceId: { exact: videoId } } : {}),
  };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch (error) {
    if (error && error.name === "OverconstrainedError" && (audioId || videoId)) {
      return openLocalMedia({}); // the remembered device is gone: take the default ones
    }
    if (error && (error.name === "NotFoundError" || error.name === "NotReadableError")) {
      try {
        return await navigator.mediaDevices.getUserMedia({ audio, video: false });
      } catch (audioError) {
        throw describe(audioError);
      }
    }
    throw describe(error);
  }
}

function describe(error) {
  const name = (error && error.name) || "Error";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return new MediaProblem(
      "denied",
      "Camera and microphone are blocked",
      "Allow this site to use your camera and microphone (the camera icon in the address bar), then try again.",
    );
  }
  if (name === "NotFoundError") {
    return new MediaProblem("missing", "No microphone found", "Connect a microphone or a headset, then try again.");
  }
  if (name === "NotReadableError") {
    return new MediaProblem(
      "busy",
      "Your camera or microphone is busy",
      "Another application is using it. Close that application, then try again.",
    );
  }
  return new MediaProblem("other", "Camera and microphone could not start", String((error && error.message) || name));
}

export async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    audio: devices.filter((d) => d.kind === "audioinput"),
    video: devices.filter((d) => d.kind === "videoinput"),
  };
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
  analyser.fftSize = 512;
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
