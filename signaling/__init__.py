"""SIP signalling, after RFC 3261: messages, transports, transactions, dialogs, digest auth, registrar."""
