"""Media: rooms, participants, WebRTC and plain-RTP legs, the audio mixer and the selective video forwarder."""
