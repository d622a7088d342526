"""What a page in a meeting receives, read from inside the page: decoded frames, pixels, audio samples.

Shared by the media story tests and the bench (bench/web/): each reads `window.__meeting.call`, the MeetingCall
the apps expose while in a meeting.
"""

from __future__ import annotations

from typing import Any

# {mid: {framesDecoded, width, height}} for every video slot, and the inbound audio's totalSamplesReceived.
RECEIVED_JS = """
async () => {
  const call = window.__meeting && window.__meeting.call;
  const pc = call && call.peerConnection;
  if (!pc) return null;
  const video = {};
  let audioSamples = 0;
  for (const transceiver of pc.getTransceivers()) {
    if (!transceiver.mid || !transceiver.receiver) continue;
    const stats = await transceiver.receiver.getStats();
    for (const report of stats.values()) {
      if (report.type !== 'inbound-rtp') continue;
      if (report.kind === 'video') {
        video[transceiver.mid] = { framesDecoded: report.framesDecoded || 0,
                                   width: report.frameWidth || 0, height: report.frameHeight || 0 };
      } else if (report.kind === 'audio') {
        audioSamples += report.totalSamplesReceived || 0;
      }
    }
  }
  return { video, audioSamples };
}
"""

# The share of a tile's pixels that are not black (0..1), drawn from its <video> element.
LIT_PIXELS_JS = """
(mid) => {
  const video = document.querySelector(`.tile[data-mid="${mid}"] video`);
  if (!video || !video.videoWidth) return 0;
  const canvas = document.createElement('canvas');
  canvas.width = Math.min(video.videoWidth, 320);
  canvas.height = Math.round(canvas.width * video.videoHeight / video.videoWidth);
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0, canvas.width, canvas.height);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 48) lit++;
  return lit / (data.length / 4);
}
"""

# Milliseconds from navigation start to the first decoded frame on any slot (polled in the page), or null.
FIRST_FRAME_JS = """
() => new Promise((resolve) => {
  const started = performance.now();
  const poll = async () => {
    const call = window.__meeting && window.__meeting.call;
    const pc = call && call.peerConnection;
    if (pc) {
      for (const transceiver of pc.getTransceivers()) {
        if (!transceiver.receiver || transceiver.receiver.track.kind !== 'video') continue;
        const stats = await transceiver.receiver.getStats();
        for (const report of stats.values()) {
          if (report.type === 'inbound-rtp' && report.kind === 'video' && report.framesDecoded > 0) {
            return resolve(performance.now());
          }
        }
      }
    }
    if (performance.now() - started > 30000) return resolve(null);
    setTimeout(poll, 10);
  };
  poll();
})
"""


async def received(page: Any) -> dict[str, Any]:
    result: dict[str, Any] | None = await page.evaluate(RECEIVED_JS)
    return result or {"video": {}, "audioSamples": 0}


async def tile_mid(page: Any, participant: str, wait_s: float = 20.0) -> str:
    """The mid of the slot showing that participant's video (waits for it).

    His tile comes with the room's participant list, before the room maps a slot to his video (only once that video
    has a frame): wait for the mid, not for the tile.
    """
    tile = page.locator(f"#tiles .tile[data-participant='{participant}'][data-mid]:not([data-mid=''])")
    await tile.wait_for(timeout=wait_s * 1000)
    mid = await tile.get_attribute("data-mid")
    assert mid, f"the tile of {participant} has no mid"
    return mid


async def lit_pixels(page: Any, mid: str) -> float:
    return float(await page.evaluate(LIT_PIXELS_JS, mid))


# Inbound stream counters of the page's call: per video mid {framesDecoded, freezeCount, totalFreezesDuration,
# keyFramesDecoded, packetsLost, packetsReceived, nackCount, pliCount, bytesReceived}, and audio
# {totalSamplesReceived, concealedSamples, silentConcealedSamples, packetsReceived, packetsLost, jitterBufferDelay,
# jitterBufferEmittedCount, bytesReceived}.
INBOUND_JS = """
async () => {
  const call = window.__meeting && window.__meeting.call;
  const pc = call && call.peerConnection;
  if (!pc) return null;
  const video = {};
  const audio = { totalSamplesReceived: 0, concealedSamples: 0, silentConcealedSamples: 0, packetsReceived: 0,
                  packetsLost: 0, jitterBufferDelay: 0, jitterBufferEmittedCount: 0, bytesReceived: 0 };
  for (const transceiver of pc.getTransceivers()) {
    if (!transceiver.mid || !transceiver.receiver) continue;
    const stats = await transceiver.receiver.getStats();
    for (const r of stats.values()) {
      if (r.type !== 'inbound-rtp') continue;
      if (r.kind === 'video') {
        video[transceiver.mid] = { framesDecoded: r.framesDecoded || 0, freezeCount: r.freezeCount || 0,
          totalFreezesDuration: r.totalFreezesDuration || 0, keyFramesDecoded: r.keyFramesDecoded || 0,
          packetsLost: r.packetsLost || 0, packetsReceived: r.packetsReceived || 0, nackCount: r.nackCount || 0,
          pliCount: r.pliCount || 0, bytesReceived: r.bytesReceived || 0 };
      } else if (r.kind === 'audio') {
        for (const key of Object.keys(audio)) audio[key] += r[key] || 0;
      }
    }
  }
  return { video, audio };
}
"""

# The ICE candidate pair the call uses: {local: candidateType, relayProtocol: "udp"|"tcp"|"tls"|null, remote: type}.
SELECTED_PAIR_JS = """
async () => {
  const call = window.__meeting && window.__meeting.call;
  const pc = call && call.peerConnection;
  if (!pc) return null;
  const stats = await pc.getStats();
  for (const report of stats.values()) {
    if (report.type !== 'transport' || !report.selectedCandidatePairId) continue;
    const pair = stats.get(report.selectedCandidatePairId);
    const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
    return { local: local.candidateType, relayProtocol: local.relayProtocol || null, remote: remote.candidateType,
             state: pair.state };
  }
  return null;
}
"""


async def inbound(page: Any) -> dict[str, Any]:
    result: dict[str, Any] | None = await page.evaluate(INBOUND_JS)
    return result or {"video": {}, "audio": {}}


async def selected_pair(page: Any) -> dict[str, Any] | None:
    result: dict[str, Any] | None = await page.evaluate(SELECTED_PAIR_JS)
    return result
