"""Call control: SIP accounts, the meeting dial plan, and SIP dialogs wired to SFU room participants."""
