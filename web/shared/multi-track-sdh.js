// sip.js's stock SessionDescriptionHandler keeps one remote video track and stops the previous one when another
// arrives: with one video m-line per slot, every tile but the last would go black. This one keeps every track.

import { SessionDescriptionHandler } from "/vendor/sip.js/platform/web/session-description-handler/session-description-handler.js";

export class MultiTrackSessionDescriptionHandler extends SessionDescriptionHandler {
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
}
