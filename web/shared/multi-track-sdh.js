// Changes to sip.js's stock SessionDescriptionHandler. Two for a server that adds one video m-line per slot:
// - keep every remote track: the stock one keeps a single remote video track and stops the previous one when
//   another arrives, so every tile but the last would go black;
// - answer each m-line of a re-offer with its own direction: the stock one applies the first direction it finds in
//   the offer to every transceiver (a first m-line offered recvonly would make every slot inactive).
// And one for rejoining after a dropped connection: closing leaves the camera and microphone running (the stock one
// stops them); they belong to the page, which stops them when the person leaves.

import { SessionDescriptionHandler } from "sip.js";

import { mark } from "./marks.js";

const DIRECTION = /^a=(sendrecv|sendonly|recvonly|inactive)\s*$/m;

/** mid -> offered direction, per m-section of an SDP (the session-level attribute applies where none is given). */
export function offeredDirections(sdp) {
  const [session, ...sections] = sdp.split(/\r?\n(?=m=)/);
  const sessionDirection = (DIRECTION.exec(session) || [])[1] || "sendrecv";
  const directions = new Map();
  for (const section of sections) {
    const mid = (/^a=mid:(\S+)/m.exec(section) || [])[1];
    if (mid !== undefined) directions.set(mid, (DIRECTION.exec(section) || [])[1] || sessionDirection);
  }
  return directions;
}

/** `sdp` with `a=content:slides` in the m-section of `mid`. */
export function markSlides(sdp, mid) {
  return sdp
    .split(/\r\n(?=m=)/)
    .map((section) =>
      new RegExp(`^a=mid:${mid.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\r?$`, "m").test(section) && !/^a=content:/m.test(section)
        ? section.replace(/^(a=mid:.*)$/m, "$1\r\na=content:slides")
        : section,
    )
    .join("\r\n");
}

// With no STUN or TURN server, every candidate is a host candidate, known within milliseconds: the offer goes out
// once no new candidate has come for this long, rather than when Chrome declares gathering complete (~150 ms more).
const HOST_CANDIDATES_SETTLED_MS = 40;

export class MultiTrackSessionDescriptionHandler extends SessionDescriptionHandler {
  /**
   * Wait for ICE gathering, only as long as it can matter:
   * - a later description (the answer to a re-INVITE adding slots, no ICE restart) rides the bundled transport
   *   whose candidates the server already has: nothing to wait for;
   * - the first offer, with host candidates only: until they have settled (still capped by iceGatheringTimeout).
   */
  waitForIceGatheringComplete(restart = false, timeout = 0) {
    const waiting = super.waitForIceGatheringComplete(restart, timeout);
    const pc = this.peerConnection;
    if (!pc || restart || pc.iceGatheringState === "complete") return waiting;
    if (pc.remoteDescription && pc.currentLocalDescription) {
      this.iceGatheringComplete();
      return waiting;
    }
    const servers = (pc.getConfiguration && pc.getConfiguration().iceServers) || [];
    if (servers.length === 0) {
      let timer;
      const settle = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          pc.removeEventListener("icecandidate", onCandidate);
          this.iceGatheringComplete();
        }, HOST_CANDIDATES_SETTLED_MS);
      };
      const onCandidate = (event) => {
        if (event.candidate && event.candidate.candidate) settle();
      };
      pc.addEventListener("icecandidate", onCandidate);
      if (pc.localDescription && /^a=candidate:/m.test(pc.localDescription.sdp)) settle(); // some came already
      const stop = () => {
        clearTimeout(timer);
        pc.removeEventListener("icecandidate", onCandidate);
      };
      waiting.then(stop, stop);
    }
    return waiting;
  }

  getDescription(options, modifiers) {
    // The first description is the INVITE's offer: it is sent as soon as this resolves.
    const first = !this.describedOnce;
    this.describedOnce = true;
    return super.getDescription(options, modifiers).then((description) => {
      mark(first ? "invite-sent" : "reinvite-answer-ready");
      return description;
    });
  }

  close() {
    // As the stock close(), less stopping the senders' tracks (it reads the same two fields of its own).
    const pc = this._peerConnection;
    if (pc === undefined) return;
    pc.getReceivers().forEach((receiver) => receiver.track && receiver.track.stop());
    if (this._dataChannel) this._dataChannel.close();
    pc.close();
    this._peerConnection = undefined;
  }

  setRemoteTrack(track) {
    const remoteStream = this.remoteMediaStream;
    if (remoteStream.getTrackById(track.id)) return;
    remoteStream.addTrack(track);
    SessionDescriptionHandler.dispatchAddTrackEvent(remoteStream, track);
    track.addEventListener("ended", () => {
      if (remoteStream.getTrackById(track.id)) {
        remoteStream.removeTrack(track);
        SessionDescriptionHandler.dispatchRemoveTrackEvent(remoteStream, track);
      }
    });
  }

  /** What goes on the wire: the shared screen's m-line marked `a=content:slides` (RFC 4796), so the server tells
   * it from the camera. (The browser keeps its own description: it takes no munged SDP.) */
  getLocalSessionDescription() {
    return super.getLocalSessionDescription().then((description) => {
      const transceiver = this.slidesTransceiver && this.slidesTransceiver();
      if (!transceiver || !transceiver.mid) return description;
      return { type: description.type, sdp: markSlides(description.sdp, transceiver.mid) };
    });
  }

  updateDirection(options) {
    const pc = this.peerConnection;
    if (pc && pc.signalingState === "stable" && !(options && options.hold)) {
      // our own re-offer (a screen share starting or stopping): each m-line keeps the direction the app gave it
      // (the stock one turns a sendonly screen into sendrecv and an inactive one into recvonly)
      return Promise.resolve();
    }
    if (!pc || pc.signalingState !== "have-remote-offer" || !pc.remoteDescription) {
      return super.updateDirection(options);
    }
    const hold = Boolean(options && options.hold);
    const offered = offeredDirections(pc.remoteDescription.sdp);
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.stopped || transceiver.direction === "stopped" || transceiver.mid === null) continue;
      const sending = Boolean(transceiver.sender && transceiver.sender.track) && !hold;
      let wanted;
      switch (offered.get(transceiver.mid) || "sendrecv") {
        case "inactive":
          wanted = "inactive";
          break;
        case "recvonly": // the far end only receives: send if we have something to send
          wanted = sending ? "sendonly" : "inactive";
          break;
        case "sendonly": // the far end only sends (a video slot): receive
          wanted = hold ? "inactive" : "recvonly";
          break;
        default:
          wanted = sending ? "sendrecv" : hold ? "inactive" : "recvonly";
      }
      if (transceiver.direction !== wanted) transceiver.direction = wanted;
    }
    return Promise.resolve();
  }
}
