// A participant's call into a meeting: sip.js over WebSocket (REGISTER, INVITE), WebRTC media, the server's
// re-INVITEs that add one receive-only video m-line per slot, and the room updates carried by in-dialog MESSAGEs.
//
// Events (EventTarget, detail in event.detail):
//   "slots"        the video slots changed (a slot appeared, went away, or was mapped to someone else)
//   "participants" the participant list or someone's talking/muted state changed
//   "ended"        {reason: "deleted" | "expired" | "kicked" | "hangup" | "left" | "lost", text}
//   "reconnecting" {why}: the connection dropped; the call is being rejoined by itself (RECONNECT_SECONDS at most)
//   "reconnected"  the call is back (a new SIP dialog; the room's messages rebuild participants and slots)
//   "connection"   {state} of the peer connection, for diagnostics
//   "screen"       my screen share started or stopped (this.screenTrack)
//   "devices"      my microphone or camera was switched (localStream has the new track)
//
// The message formats this expects from the server are written down in web/README.md.

import {
  Inviter,
  Registerer,
  RegistererState,
  SessionState,
  UserAgent,
} from "sip.js"; // the pages' import map: the bundle built at set-up (web/sip-bundle.js), see web/README.md
import { MultiTrackSessionDescriptionHandler } from "./multi-track-sdh.js";
import { mark } from "./marks.js";

export class JoinError extends Error {
  /** kind: "full" | "not-found" | "forbidden" | "unreachable" | "auth" | "unavailable" | "media" | "failed" */
  constructor(kind, message, detail = {}) {
    super(message);
    this.kind = kind;
    this.detail = detail;
  }
}

const ICE_GATHERING_TIMEOUT_MS = 1000;
const REGISTER_TIMEOUT_MS = 8000;
// A dropped connection (SIP WebSocket or media) is rejoined by itself for this long before "Connection lost".
export const RECONNECT_SECONDS = 45;
const RECONNECT_DELAYS_MS = [250, 1000, 2000, 4000];
// Refusals that mean the meeting is gone or closed to us: no point in trying again.
const FINAL_REFUSALS = new Set(["not-found", "forbidden", "auth", "full"]);

/** The text of a SIP Reason header: `Q.850;cause=16;text="meeting deleted"` -> "meeting deleted". */
export function reasonText(header) {
  if (!header) return "";
  const match = /text\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(header) || /text\s*=\s*([^;,]+)/i.exec(header);
  return match ? match[1].replace(/\\(.)/g, "$1").trim() : "";
}

/** What a BYE means for the person who receives it. */
export function byeReason(text) {
  const lower = String(text || "").toLowerCase();
  if (/kick|removed|remove/.test(lower)) return "kicked";
  if (/expir/.test(lower)) return "expired";
  if (/delet|ended|closed/.test(lower)) return "deleted";
  return "hangup";
}

function channelList(body) {
  if (Array.isArray(body.channels)) return body.channels;
  if (body.channel && typeof body.channel === "object") return [body.channel];
  return [];
}

export class MeetingCall extends EventTarget {
  /**
   * @param {object} options
   * @param {import("./api.js").Api} options.api  the server (its origin gives the SIP WebSocket URL)
   * @param {object} options.config   from Api.webConfig()
   * @param {string} options.username SIP username (the meeting's guest account, or the user's own line)
   * @param {string} options.password SIP password
   * @param {string} options.target   what to dial: "meeting-guest" or "wazo-meeting-{uuid}"
   * @param {string} options.displayName the name the others see
   * @param {MediaStream} options.localStream camera and microphone, already opened by the page
   */
  constructor({ api, config, username, password, target, displayName, localStream }) {
    super();
    this.api = api;
    this.config = config;
    this.username = username;
    this.password = password;
    this.target = target;
    this.displayName = displayName;
    this.localStream = localStream;
    this.participants = new Map(); // channel id -> {id, name, number, talking, muted, videoMuted, handRaised, callId, isMe}
    this.chat = []; // {name, text, mine, time}, in the room's order
    this.slots = new Map(); // mid -> {mid, track, stream, channelId}
    this.slotMap = {}; // mid -> channel id, from the server's video_slots
    this.screenSlots = new Set(); // the mids that show a shared screen, from the server's screen_slots
    this.screenTrack = null; // the screen I share, while I share it
    this.screenTransceiver = null; // its m-line (a=content:slides), kept for the next share
    this.pausedMids = new Set(); // slots the server paused (our link has no room for them), from video_slots_paused
    this.audioElements = new Map(); // track id -> <audio>
    this.audioHost = null;
    this.userAgent = null;
    this.registerer = null;
    this.session = null;
    this.callId = null;
    this.ended = false;
    this.joinedAt = null;
    this.connecting = null; // the promise of connect(): WebSocket open and REGISTER done
    this.connected = false;
    this.recovering = false;
  }

  get peerConnection() {
    const handler = this.session && this.session.sessionDescriptionHandler;
    return handler ? handler.peerConnection : undefined;
  }

  /** Register (if connect() has not already), dial and wait for the answer. Throws JoinError with a kind the page
   * can explain. localStream and displayName are read now, so a page may connect() before it has them. */
  async join({ audioHost = document.body } = {}) {
    this.audioHost = audioHost;
    const target = UserAgent.makeURI(`sip:${this.target}@${this.config.sipDomain}`);
    if (!target) throw new JoinError("failed", "The meeting address is not valid.");
    this.targetUri = target;
    await this.connect();
    await this.refreshIceServers();
    await this.invite(target);
  }

  /** TURN credentials (coturn's REST scheme: username "<expiry>:<id>") run out: a page left open for long, or a call
   * that reconnects, fetches fresh ones before dialling. */
  async refreshIceServers() {
    const soon = Date.now() / 1000 + 60;
    const expiring = this.config.iceServers.some(
      (server) => typeof server.username === "string" && Number(server.username.split(":")[0]) < soon,
    );
    if (!expiring) return;
    try {
      this.config = { ...this.config, iceServers: (await this.api.webConfig()).iceServers };
    } catch {
      /* keep those held: a network that needs no relay still joins */
    }
  }

  /**
   * The connection dropped during the call: rejoin by itself (new WebSocket, REGISTER, INVITE with the same
   * camera and microphone), with a "reconnecting" state the page shows, for RECONNECT_SECONDS before giving up.
   */
  async recover(why) {
    if (this.ended || this.recovering || !this.targetUri) return;
    this.recovering = true;
    this.emit("reconnecting", { why });
    this.dropSession();
    const deadline = Date.now() + RECONNECT_SECONDS * 1000;
    for (let attempt = 0; !this.ended && Date.now() < deadline; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)]));
      if (this.ended) return;
      try {
        await this.stopUserAgent({ unregister: false });
        this.connecting = null;
        await this.connect();
        await this.refreshIceServers();
        await this.invite(this.targetUri);
      } catch (error) {
        if (error instanceof JoinError && FINAL_REFUSALS.has(error.kind)) {
          this.recovering = false;
          this.finish(error.kind === "not-found" ? "deleted" : "hangup", error.message);
          return;
        }
        continue; // the server or the network is not back yet
      }
      this.recovering = false;
      this.toldState = null; // a new participant on the server: tell it our microphone, camera and pin again
      this.tellState({});
      if (this.pinned) this.pin(this.pinned);
      this.emit("reconnected");
      return;
    }
    this.recovering = false;
    this.finish("lost", "The connection to the meeting was lost.");
  }

  /** Forget the dropped call without ending this one: its media, its slots, its room state. */
  dropSession() {
    const session = this.session;
    this.session = null;
    if (session && session.state === SessionState.Established && this.userAgent && this.userAgent.isConnected()) {
      session.bye().catch(() => {}); // the media failed but the signalling still carries: free our seat at once
    }
    if (session && session.sessionDescriptionHandler) {
      try {
        session.sessionDescriptionHandler.close();
      } catch {
        /* closed already */
      }
    }
    for (const audio of this.audioElements.values()) {
      audio.srcObject = null;
      audio.remove();
    }
    this.audioElements.clear();
    this.slots.clear();
    this.slotMap = {};
    this.screenSlots = new Set();
    this.endScreenShare(); // a new call starts without it: the person shares again if he wants
    this.screenTransceiver = null;
    this.participants.clear();
    this.emit("slots");
    this.emit("participants");
  }

  /** Open the SIP WebSocket and REGISTER, once: a page may start this early (while the person gets ready) so that
   * joining is only the INVITE. Tried again by a later call if it failed or the connection has dropped since. */
  connect() {
    if (this.connecting && (!this.connected || this.stillRegistered())) return this.connecting;
    if (this.connecting) this.stopUserAgent({ unregister: false }); // the connection dropped while waiting
    this.connected = false;
    const connecting = this.startUserAgent().then(() => this.register());
    this.connecting = connecting;
    connecting.then(
      () => {
        this.connected = true;
        mark("registered");
      },
      () => {
        if (this.connecting === connecting) this.connecting = null;
      },
    );
    return connecting;
  }

  stillRegistered() {
    const ua = this.userAgent;
    return Boolean(ua && ua.isConnected() && this.registerer && this.registerer.state === RegistererState.Registered);
  }

  /** Let go of a connect() that did not lead to a call (un-REGISTER, close). */
  async close() {
    this.connecting = null;
    await this.stopUserAgent();
  }

  async startUserAgent() {
    const uri = UserAgent.makeURI(`sip:${this.username}@${this.config.sipDomain}`);
    if (!uri) throw new JoinError("failed", "The meeting address is not valid.");
    this.userAgent = new UserAgent({
      uri,
      displayName: this.displayName,
      authorizationUsername: this.username,
      authorizationPassword: this.password,
      transportOptions: {
        server: this.api.websocketUrl(this.config.sipWebsocketPath),
        connectionTimeout: 6,
        keepAliveInterval: 20,
      },
      logLevel: "error",
      userAgentString: "meetings-web (sip.js 0.21)",
      sessionDescriptionHandlerFactory: (session, options) => {
        const logger = session.userAgent.getLogger("sip.SessionDescriptionHandler");
        const handler = new MultiTrackSessionDescriptionHandler(logger, () => Promise.resolve(this.localStream), {
          iceGatheringTimeout: ICE_GATHERING_TIMEOUT_MS,
          peerConnectionConfiguration: {
            bundlePolicy: "balanced",
            rtcpMuxPolicy: "require",
            iceServers: this.config.iceServers, // explicit, even empty: never a public STUN server by default
            ...(options && options.peerConnectionConfiguration),
          },
        });
        handler.slidesTransceiver = () => this.screenTransceiver; // its m-line goes out marked a=content:slides
        return handler;
      },
      delegate: {
        onDisconnect: (error) => {
          if (error && !this.ended && this.session) this.recover("the connection to the server dropped");
        },
      },
    });

    try {
      await this.userAgent.start();
      mark("websocket-open");
    } catch (error) {
      await this.stopUserAgent();
      throw new JoinError("unreachable", "The meeting server cannot be reached for calls. Check your connection.");
    }
  }

  async register() {
    this.registerer = new Registerer(this.userAgent, { expires: 600 });
    const registered = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new JoinError("unreachable", "The meeting server did not answer the registration.")),
        REGISTER_TIMEOUT_MS,
      );
      this.registerer.stateChange.addListener((state) => {
        if (state === RegistererState.Registered) {
          clearTimeout(timer);
          resolve();
        }
      });
      this.registerer
        .register({
          requestDelegate: {
            onReject: (response) => {
              clearTimeout(timer);
              const code = response.message.statusCode;
              const kind = code === 401 || code === 403 || code === 407 ? "auth" : "failed";
              reject(new JoinError(kind, "The meeting server refused this participant's credentials.", { code }));
            },
          },
        })
        .catch((error) => {
          clearTimeout(timer);
          reject(new JoinError("unreachable", String(error.message || error)));
        });
    });
    try {
      await registered;
    } catch (error) {
      await this.stopUserAgent();
      throw error;
    }
  }

  async invite(target) {
    const inviter = new Inviter(this.userAgent, target, {
      sessionDescriptionHandlerOptions: { constraints: { audio: true, video: true } },
      earlyMedia: false,
      params: { fromDisplayName: this.displayName }, // the name given at Join, after connect() may have run
    });
    this.session = inviter;
    this.callId = inviter.request.callId;
    inviter.delegate = {
      onMessage: (message) => this.onMessage(message),
      onBye: (bye) => {
        const text = reasonText(bye.request.getHeader("Reason"));
        bye.accept();
        if (this.session === inviter) this.finish(byeReason(text), text);
      },
      onSessionDescriptionHandler: (handler) => this.watchPeerConnection(handler),
      onInvite: () => this.reconcileSlots(),
    };
    const answered = new Promise((resolve, reject) => {
      inviter.stateChange.addListener((state) => {
        if (state === SessionState.Established) resolve();
        // The final response's delegate runs right after this state change: read the refusal once it has.
        if (state === SessionState.Terminated) Promise.resolve().then(() => reject(this.refusal));
      });
    });
    answered.catch(() => {}); // awaited below, unless the INVITE fails before it is sent
    this.refusal = new JoinError("failed", "The call to the meeting failed.");
    try {
      await inviter.invite({
        requestDelegate: {
          onReject: (response) => {
            this.refusal = refusalError(response.message);
          },
        },
      });
      await answered;
      mark("answered");
    } catch (error) {
      this.session = null;
      await this.stopUserAgent();
      throw error instanceof JoinError ? error : this.refusal;
    }
    this.joinedAt = Date.now();
    inviter.stateChange.addListener((state) => {
      // a dropped session being replaced (recover) ends nothing
      if (state === SessionState.Terminated && this.session === inviter) this.finish("hangup", "");
    });
    this.reconcileSlots();
  }

  watchPeerConnection(handler) {
    const pc = handler.peerConnection;
    pc.addEventListener("track", (event) => this.onTrack(event));
    pc.addEventListener("signalingstatechange", () => {
      const state = pc.signalingState;
      if (state === "have-local-offer") mark("offer-created");
      if (state === "have-remote-offer") mark("reinvite-received");
      if (state === "stable") {
        mark(pc.remoteDescription && pc.remoteDescription.type === "offer" ? "reinvite-answered" : "answer-applied");
        this.reconcileSlots();
      }
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed") mark("ice-connected");
    });
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") mark("ice-gathered");
    });
    pc.addEventListener("connectionstatechange", () => {
      this.emit("connection", { state: pc.connectionState });
      if (pc.connectionState === "connected") mark("dtls-connected");
      if (pc.connectionState === "failed" && !this.ended && this.peerConnection === pc) {
        this.recover("the media connection failed");
      }
    });
  }

  onTrack(event) {
    const track = event.track;
    mark(`track-${track.kind}`);
    if (track.kind === "audio") {
      // Remote audio must play through an <audio autoplay> element, or Chrome decodes nothing.
      const audio = document.createElement("audio");
      audio.autoplay = true;
      audio.dataset.remoteAudio = "";
      audio.srcObject = new MediaStream([track]);
      if (this.speakerId && audio.setSinkId) audio.setSinkId(this.speakerId).catch(() => {});
      this.audioHost.append(audio);
      audio.play().catch(() => {});
      this.audioElements.set(track.id, audio);
      return;
    }
    this.reconcileSlots();
  }

  /** The receive-only video transceivers are the slots; keep one entry (and one track) per mid. */
  reconcileSlots() {
    const pc = this.peerConnection;
    if (!pc) return;
    const seen = new Set();
    let changed = false;
    for (const transceiver of pc.getTransceivers()) {
      const track = transceiver.receiver && transceiver.receiver.track;
      if (!track || track.kind !== "video" || !transceiver.mid) continue;
      const receiving =
        !transceiver.stopped &&
        (transceiver.currentDirection === "recvonly" || transceiver.currentDirection === "sendrecv");
      if (!receiving || (transceiver.sender && transceiver.sender.track)) continue;
      seen.add(transceiver.mid);
      const existing = this.slots.get(transceiver.mid);
      if (!existing || existing.track !== track) {
        this.slots.set(transceiver.mid, {
          mid: transceiver.mid,
          track,
          stream: new MediaStream([track]),
          channelId: null,
        });
        changed = true;
      }
    }
    for (const mid of [...this.slots.keys()]) {
      if (!seen.has(mid)) {
        this.slots.delete(mid);
        changed = true;
      }
    }
    if (this.applySlotMap() || changed) this.emit("slots");
  }

  /** Who is in each slot: the server's video_slots map first; a lone participant fills a lone slot. */
  applySlotMap() {
    let changed = false;
    const others = [...this.participants.values()].filter((p) => !p.isMe);
    for (const slot of this.slots.values()) {
      let channelId = Object.prototype.hasOwnProperty.call(this.slotMap, slot.mid) ? this.slotMap[slot.mid] : undefined;
      if (channelId === undefined && others.length === 1 && this.slots.size === 1) channelId = others[0].id;
      channelId = channelId === undefined ? null : channelId;
      const screen = this.screenSlots.has(slot.mid);
      if (slot.channelId !== channelId || slot.screen !== screen) {
        slot.channelId = channelId;
        slot.screen = screen;
        changed = true;
      }
    }
    return changed;
  }

  onMessage(message) {
    const request = message.request;
    message.accept();
    let body;
    try {
      body = JSON.parse(request.body);
    } catch {
      return;
    }
    if (!body || typeof body !== "object") return;
    this.applyRoomEvent(body);
  }

  /** One room update (ConfbridgeWelcome/Join/Leave/Talking/Mute/Unmute, optionally with video_slots). */
  applyRoomEvent(body) {
    const channels = channelList(body);
    switch (body.type) {
      case "ConfbridgeWelcome":
        this.participants.clear();
        channels.forEach((channel) => this.upsert(channel));
        break;
      case "ConfbridgeJoin":
        channels.forEach((channel) => this.upsert(channel));
        break;
      case "ConfbridgeLeave":
        channels.forEach((channel) => this.participants.delete(String(channel.id)));
        break;
      case "ConfbridgeTalking":
      case "ConfbridgeMute":
      case "ConfbridgeUnmute":
      case "ConfbridgeVideoMute":
      case "ConfbridgeVideoUnmute":
      case "ConfbridgeHandRaised":
      case "ConfbridgeHandLowered":
        channels.forEach((channel) => this.upsert(channel));
        break;
      default:
        break;
    }
    if (body.type === "ConfbridgeChat" && typeof body.text === "string") {
      const from = channelList(body)[0] || {};
      const vars = from.channelvars || {};
      const caller = from.caller || {};
      this.chat.push({
        text: body.text,
        name: caller.name || caller.number || "Someone",
        mine: Boolean(vars.WAZO_SIP_CALL_ID && vars.WAZO_SIP_CALL_ID === this.callId),
        time: typeof body.timestamp === "number" ? body.timestamp * 1000 : Date.now(),
      });
      this.emit("chat");
      return;
    }
    if (body.video_slots && typeof body.video_slots === "object") {
      this.applyPausedSlots(body.video_slots_paused);
      this.slotMap = {};
      for (const [mid, channelId] of Object.entries(body.video_slots)) {
        this.slotMap[mid] = channelId === null || channelId === undefined ? null : String(channelId);
      }
      this.screenSlots = new Set(Array.isArray(body.screen_slots) ? body.screen_slots.map(String) : []);
    }
    this.applySlotMap();
    this.emit("participants");
    this.emit("slots");
  }

  /** The slots the server paused for want of bandwidth (a list of mids; absent: none). */
  applyPausedSlots(mids) {
    this.pausedMids = new Set(Array.isArray(mids) ? mids.map(String) : []);
  }

  isPaused(slot) {
    return Boolean(slot && this.pausedMids.has(slot.mid));
  }

  upsert(channel) {
    if (!channel || channel.id === undefined || channel.id === null) return;
    const id = String(channel.id);
    const previous = this.participants.get(id) || {};
    const caller = channel.caller || {};
    const vars = channel.channelvars || {};
    const callId = vars.WAZO_SIP_CALL_ID || previous.callId || null;
    const participant = {
      id,
      name: caller.name || previous.name || caller.number || "Participant",
      number: caller.number || previous.number || "",
      talking: channel.talking_status !== undefined ? channel.talking_status === "on" : Boolean(previous.talking),
      muted: channel.muted !== undefined ? Boolean(channel.muted) : Boolean(previous.muted),
      videoMuted: channel.video_muted !== undefined ? Boolean(channel.video_muted) : Boolean(previous.videoMuted),
      handRaised: channel.hand_raised !== undefined ? Boolean(channel.hand_raised) : Boolean(previous.handRaised),
      callId,
      isMe: Boolean(callId && callId === this.callId),
    };
    this.participants.set(id, participant);
  }

  participantFor(slot) {
    return slot && slot.channelId ? this.participants.get(slot.channelId) || null : null;
  }

  me() {
    return [...this.participants.values()].find((p) => p.isMe) || null;
  }

  setMicEnabled(enabled) {
    this.localStream.getAudioTracks().forEach((track) => (track.enabled = enabled));
    this.tellState({ muted: !enabled });
  }

  setCameraEnabled(enabled) {
    this.localStream.getVideoTracks().forEach((track) => (track.enabled = enabled));
    this.tellState({ video_muted: !enabled });
  }

  /**
   * Another microphone or camera during the call: the sender's track is replaced (RTCRtpSender.replaceTrack: no
   * renegotiation, the others' picture and sound go on), and the new one keeps the old one's on/off state.
   */
  async replaceLocalTrack(track) {
    const old = track.kind === "audio" ? this.localStream.getAudioTracks()[0] : this.localStream.getVideoTracks()[0];
    track.enabled = old ? old.enabled : true;
    const pc = this.peerConnection;
    const sender = pc && old ? pc.getSenders().find((candidate) => candidate.track === old) : null;
    if (sender) await sender.replaceTrack(track);
    if (old) {
      this.localStream.removeTrack(old);
      old.stop();
    }
    this.localStream.addTrack(track);
    this.emit("devices");
  }

  /** Where the others' sound plays (a device id of enumerateDevices' audiooutput; "" for the default). */
  setSpeaker(deviceId) {
    this.speakerId = deviceId || "";
    for (const audio of this.audioElements.values()) {
      if (audio.setSinkId) audio.setSinkId(this.speakerId).catch(() => {});
    }
  }

  /** A chat line to everyone in the room (it comes back to us in the room's order, as to the others). */
  sendChat(text) {
    this.sendAppMessage({ type: "Chat", text });
  }

  setHandRaised(raised) {
    this.tellState({ hand_raised: raised });
  }

  sendAppMessage(message) {
    const session = this.session;
    if (!session || session.state !== SessionState.Established) return;
    const content = JSON.stringify(message);
    session
      .message({ requestOptions: { body: { contentDisposition: "render", contentType: "application/json", content } } })
      .catch(() => {});
  }

  /** Who presents now: [{person, slot}] for each shared screen a slot of mine shows. */
  presenters() {
    return [...this.slots.values()]
      .filter((slot) => slot.screen && slot.channelId)
      .map((slot) => ({ person: this.participants.get(slot.channelId) || null, slot }))
      .filter((entry) => entry.person && !entry.person.isMe);
  }

  /**
   * Share a screen (the browser asks which): a second video m-line of mine, sendonly, marked a=content:slides,
   * added by re-INVITE; the room shows it to everyone. Throws the browser's error when the person cancels.
   */
  async startScreenShare() {
    const pc = this.peerConnection;
    if (!pc || this.screenTrack) return;
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
    const track = stream.getVideoTracks()[0];
    if ("contentHint" in track) track.contentHint = "detail"; // text stays sharp rather than motion smooth
    track.addEventListener("ended", () => this.stopScreenShare()); // the browser's own "Stop sharing"
    this.screenTrack = track;
    if (this.screenTransceiver && !this.screenTransceiver.stopped) {
      await this.screenTransceiver.sender.replaceTrack(track);
      this.screenTransceiver.direction = "sendonly";
    } else {
      this.screenTransceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
    this.emit("screen");
    try {
      await this.renegotiate();
    } catch (error) {
      this.endScreenShare();
      throw error;
    }
  }

  /** Stop sharing: the m-line goes inactive (kept for the next share), by re-INVITE; the room stops showing it. */
  async stopScreenShare() {
    if (!this.screenTrack) return;
    this.endScreenShare();
    await this.renegotiate().catch(() => {}); // the call may be ending: nothing more to tell
  }

  endScreenShare() {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    track.stop();
    const transceiver = this.screenTransceiver;
    if (transceiver && !transceiver.stopped) {
      transceiver.sender.replaceTrack(null).catch(() => {});
      transceiver.direction = "inactive";
    }
    this.emit("screen");
  }

  /** A re-INVITE with our current m-lines; on 491 (the server's own offer crossed ours) it tries again a little later. */
  async renegotiate() {
    for (let attempt = 0; attempt < 4; attempt += 1) {
      const session = this.session;
      if (!session || session.state !== SessionState.Established) throw new Error("not in a call");
      const status = await new Promise((resolve) => {
        session
          .invite({
            requestDelegate: {
              onAccept: () => resolve(200),
              onReject: (response) => resolve(response.message.statusCode),
            },
          })
          .catch(() => resolve(491)); // one of ours or the server's is still under way
      });
      if (status < 300) return;
      if (status !== 491) throw new Error(`The server refused the change (${status}).`);
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 1500));
    }
    throw new Error("The server is busy: try again.");
  }

  /** Ask the room to keep `channelId`'s video in one of our slots whoever speaks (null: follow the speakers). */
  pin(channelId) {
    this.pinned = channelId;
    this.sendAppMessage({ type: "Pin", channel: channelId });
  }

  /** Tell the room our microphone and camera state (an in-dialog MESSAGE), so the others show it. */
  tellState(state) {
    this.ownState = { ...(this.ownState || {}), ...state };
    const session = this.session;
    if (!session || session.state !== SessionState.Established) return; // the page sets it again once joined
    // the room starts from "microphone and camera on": say only what differs from what it knows
    const told = this.toldState || { muted: false, video_muted: false, hand_raised: false };
    const changed = Object.entries(this.ownState).filter(([key, value]) => told[key] !== value);
    if (!changed.length) return;
    this.toldState = { ...told, ...this.ownState };
    this.sendAppMessage({ type: "ParticipantState", ...Object.fromEntries(changed) });
  }

  /** Hang up (the person clicked Leave). */
  async leave() {
    if (this.ended) return;
    const session = this.session;
    this.finish("left", "");
    try {
      if (session && session.state === SessionState.Established) await session.bye();
      else if (session && session.state === SessionState.Establishing) await session.cancel();
    } catch {
      /* the call is gone either way */
    }
    await this.stopUserAgent();
  }

  finish(reason, text) {
    if (this.ended) return;
    this.ended = true;
    this.endScreenShare();
    for (const audio of this.audioElements.values()) {
      audio.srcObject = null;
      audio.remove();
    }
    this.audioElements.clear();
    this.emit("ended", { reason, text });
    // Ended by the server: the account may be gone with the meeting, so no un-REGISTER; closing the WebSocket
    // drops the binding.
    if (reason !== "left") setTimeout(() => this.stopUserAgent({ unregister: false }), 0);
  }

  async stopUserAgent({ unregister = true } = {}) {
    const userAgent = this.userAgent;
    if (!userAgent) return;
    this.userAgent = null;
    try {
      if (unregister && this.registerer && this.registerer.state === RegistererState.Registered) {
        await this.registerer.unregister().catch(() => {});
      } else if (this.registerer && this.registerer.state !== RegistererState.Terminated) {
        // Stopping the user agent would un-REGISTER a still registered registerer; an account deleted with its
        // meeting can only refuse that. Ending the registerer here (timers cleared, no request) leaves it out.
        this.registerer.terminated();
      }
      await userAgent.stop();
    } catch {
      /* already stopped */
    }
  }

  emit(name, detail = {}) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }
}

function refusalError(message) {
  const code = message.statusCode;
  const text = reasonText(message.getHeader("Reason")) || message.reasonPhrase || "";
  if (/full/i.test(text) || code === 486 || code === 600) {
    return new JoinError("full", "This meeting is full.", { code, text });
  }
  if (code === 404 || code === 410 || code === 604) {
    return new JoinError("not-found", "This meeting does not exist any more.", { code, text });
  }
  if (code === 401 || code === 407) return new JoinError("auth", "The meeting server refused the credentials.", { code, text });
  if (code === 403) return new JoinError("forbidden", text || "You are not allowed into this meeting.", { code, text });
  if (code === 480 || code === 503) return new JoinError("unavailable", "The meeting cannot be joined right now.", { code, text });
  return new JoinError("failed", text ? `The call was refused: ${text}.` : `The call was refused (${code}).`, { code, text });
}
