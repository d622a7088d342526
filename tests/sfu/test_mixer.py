"""The mixer on its own, ticked by hand: selection of the K loudest, minus-self mixes, silence never decoded."""

from __future__ import annotations

import numpy as np

from sfu.codecs import AudioCodec, AudioDecoder, AudioEncoder
from sfu.mixer import AudioInbox, AudioMixer, InboundAudio, opus_frame_ms

from .clients import tone_power

PCMU = AudioCodec("PCMU", 8000, 0)
OPUS = AudioCodec("opus", 48000, 111, 2)


class Sink:
    """A listener's sending side that keeps what it is given."""

    def __init__(self, codec: AudioCodec) -> None:
        self.audio_codec = codec
        self.payloads: list[bytes] = []

    def send_audio(self, payloads: list[bytes]) -> None:
        self.payloads += payloads

    def heard(self) -> np.ndarray:
        decoder = AudioDecoder(self.audio_codec)
        return np.concatenate([decoder.decode(p, 0) for p in self.payloads])


def tone_packets(frequency: float | None, count: int, codec: AudioCodec = PCMU) -> list[bytes]:
    encoder = AudioEncoder(codec)
    packets = []
    for i in range(count + 2):
        t = (i * 960 + np.arange(960)) / 48000
        pcm = np.zeros(960) if frequency is None else np.sin(2 * np.pi * frequency * t) * 0.3 * 32767
        packets += encoder.encode(pcm.astype(np.int16))
    return packets[:count]


def run(
    mixer: AudioMixer, feeds: dict[str, tuple[AudioInbox, list[bytes], int | None, AudioCodec]], ticks: int
) -> None:
    for i in range(ticks):
        for inbox, packets, level, codec in feeds.values():
            inbox.push(InboundAudio(codec, packets[i % len(packets)], i * codec.samples_per_packet, level))
        mixer.tick()


def test_k_loudest_are_mixed_and_each_speaker_hears_the_others() -> None:
    mixer = AudioMixer(mixed_speakers=2, clock=False)
    frequencies = {"a": 440.0, "b": 880.0, "c": 1320.0, "s": None}
    levels = {"a": 10, "b": 20, "c": 30, "s": 127}
    feeds = {}
    sinks = {}
    for name, frequency in frequencies.items():
        inbox = AudioInbox()
        sinks[name] = Sink(PCMU)
        mixer.add(name, inbox, sinks[name])
        feeds[name] = (inbox, tone_packets(frequency, 50), levels[name], PCMU)
    run(mixer, feeds, 50)

    assert mixer.speakers == ["a", "b"]
    # c is above the speech level but not among the 2 loudest, s is silent: neither is decoded
    assert mixer.members["c"].decoded == 0 and mixer.members["s"].decoded == 0
    assert mixer.members["a"].decoded == 50
    silent = sinks["s"].heard()[800:]
    assert tone_power(silent, 440, 8000) > 0.3 and tone_power(silent, 880, 8000) > 0.3
    assert tone_power(silent, 1320, 8000) < 0.01
    a_hears = sinks["a"].heard()[800:]
    assert tone_power(a_hears, 880, 8000) > 0.9 and tone_power(a_hears, 440, 8000) < 0.01
    # listeners share one encoded stream: c and s were sent the same packets
    assert sinks["c"].payloads == sinks["s"].payloads


def test_without_levels_decoded_energy_selects_and_talk_events_follow() -> None:
    events: list[tuple[str, bool]] = []
    mixer = AudioMixer(
        mixed_speakers=3, talk_start_ms=60, talk_stop_ms=200, on_talking=lambda m, t: events.append((m, t)), clock=False
    )
    inboxes = {name: AudioInbox() for name in ("talker", "quiet")}
    sinks = {name: Sink(OPUS if name == "talker" else PCMU) for name in inboxes}
    for name in inboxes:
        mixer.add(name, inboxes[name], sinks[name])
    feeds = {
        "talker": (inboxes["talker"], tone_packets(440, 20), None, PCMU),
        "quiet": (inboxes["quiet"], tone_packets(None, 20), None, PCMU),
    }
    run(mixer, feeds, 20)
    assert mixer.speakers == ["talker"]
    assert events == [("talker", True)]
    assert tone_power(sinks["quiet"].heard()[800:], 440, 8000) > 0.9
    # the talker stops: after talk_stop_ms of silence, talking stops
    feeds["talker"] = (inboxes["talker"], tone_packets(None, 20), None, PCMU)
    run(mixer, feeds, 15)
    assert events == [("talker", True), ("talker", False)]
    assert mixer.speakers == []


def test_muted_member_is_not_mixed_nor_decoded() -> None:
    mixer = AudioMixer(clock=False)
    inbox, listener_inbox = AudioInbox(), AudioInbox()
    listener = Sink(PCMU)
    mixer.add("m", inbox, Sink(PCMU))
    mixer.add("l", listener_inbox, listener)
    mixer.set_muted("m", True)
    run(mixer, {"m": (inbox, tone_packets(440, 10), 10, PCMU)}, 10)
    assert mixer.members["m"].decoded == 0 and mixer.speakers == []
    assert tone_power(listener.heard(), 440, 8000) < 0.01


class DtxSink(Sink):
    """A WebRTC listener: takes Opus with gaps in silence."""

    dtx = True

    def __init__(self, codec: AudioCodec) -> None:
        super().__init__(codec)
        self.calls: list[int] = []

    def send_audio(self, payloads: list[bytes]) -> None:
        self.calls.append(len(payloads))
        super().send_audio(payloads)


def test_silence_is_never_encoded_and_webrtc_listeners_get_dtx() -> None:
    mixer = AudioMixer(mixed_speakers=2, clock=False)
    feeds = {}
    sinks: dict[str, Sink] = {"talker": DtxSink(OPUS), "listener": DtxSink(OPUS), "phone": Sink(PCMU)}
    for name, sink in sinks.items():
        inbox = AudioInbox()
        mixer.add(name, inbox, sink)
        level = 10 if name == "talker" else 127
        feeds[name] = (inbox, tone_packets(440.0 if name == "talker" else None, 50, sink.audio_codec), level, OPUS)
    run(mixer, feeds, 40)
    # the lone talker hears nobody: no encoder runs for him; the Opus listener gets his packets as they came, the
    # phone a PCMU mix (one encoder)
    assert mixer.stats.encodes == 40 and mixer.stats.forwards == 40
    talker = sinks["talker"]
    assert isinstance(talker, DtxSink)
    assert talker.calls == [1] + [0] * 19 + [1] + [0] * 19  # Opus DTX: one silence packet every 400 ms
    assert len(sinks["phone"].payloads) == 40  # plain RTP: a packet every 20 ms, silence or not
    listener = sinks["listener"]
    assert isinstance(listener, DtxSink) and listener.calls == [1] * 40
    assert tone_power(listener.heard()[9600:], 440) > 0.8

    # nobody talks: silence everywhere, still no encoding
    inbox, _, _, codec = feeds["talker"]
    feeds["talker"] = (inbox, tone_packets(None, 50, OPUS), 127, codec)
    encodes = mixer.stats.encodes
    run(mixer, feeds, 30)
    assert mixer.stats.encodes == encodes
    assert len(sinks["phone"].payloads) == 70
    assert listener.calls[40:] == [1] + [0] * 19 + [1] + [0] * 9


def test_a_lone_speaker_is_forwarded_without_decoding_or_encoding() -> None:
    mixer = AudioMixer(mixed_speakers=3, clock=False)
    talker_packets = tone_packets(440.0, 50, OPUS)
    feeds = {}
    sinks = {name: DtxSink(OPUS) for name in ("talker", "x", "y")}
    for name, sink in sinks.items():
        inbox = AudioInbox()
        mixer.add(name, inbox, sink)
        packets = talker_packets if name == "talker" else tone_packets(None, 50, OPUS)
        feeds[name] = (inbox, packets, 10 if name == "talker" else 127, OPUS)
    run(mixer, feeds, 30)
    assert mixer.stats.decodes == 0 and mixer.stats.encodes == 0 and mixer.stats.forwards == 60
    assert sinks["x"].payloads == talker_packets[:30] == sinks["y"].payloads
    # a second speaker: mixing again (x hears the talker, the talker hears x)
    inbox, _, _, codec = feeds["x"]
    feeds["x"] = (inbox, tone_packets(880.0, 50, OPUS), 20, codec)
    run(mixer, feeds, 30)
    assert mixer.stats.forwards == 60 and mixer.stats.encodes == 3 * 30
    assert tone_power(sinks["y"].heard()[-24000:], 440) > 0.3 and tone_power(sinks["y"].heard()[-24000:], 880) > 0.3


def test_opus_packet_durations() -> None:
    assert opus_frame_ms(bytes([(19 << 3) | 0])) == 20  # CELT fullband 20 ms, one frame
    assert opus_frame_ms(bytes([(1 << 3) | 0])) == 20  # SILK narrowband 20 ms
    assert opus_frame_ms(bytes([(2 << 3) | 0])) == 40
    assert opus_frame_ms(bytes([(18 << 3) | 1])) == 20  # two 10 ms CELT frames
    assert opus_frame_ms(bytes([(18 << 3) | 3, 3])) == 30
    assert opus_frame_ms(b"") == 0


def test_g711_levels_at_once_match_decoded_levels() -> None:
    from sfu.codecs import g711_levels, level_dbov

    pcma = AudioCodec("PCMA", 8000, 8)
    packets = []
    for codec in (PCMU, pcma):
        for frequency, amplitude in ((440.0, 0.3), (880.0, 0.01), (None, 0.0)):
            encoded = tone_packets(frequency, 3, codec)[2]
            if amplitude != 0.3 and frequency is not None:
                t = np.arange(960) / 48000
                pcm = (np.sin(2 * np.pi * frequency * t) * amplitude * 32767).astype(np.int16)
                encoded = AudioEncoder(codec).encode(pcm)[0]
            packets.append(InboundAudio(codec, encoded, 0, None))
    expected = [level_dbov(AudioDecoder(p.codec).decode(p.payload, 0)) for p in packets]
    assert g711_levels(packets) == expected
    assert expected[0] < 20 and expected[2] == 127
