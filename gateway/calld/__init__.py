"""calld 1.0: live meeting participants and room status."""
