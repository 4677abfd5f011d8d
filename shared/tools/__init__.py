"""The command line and what it runs: the launcher and embedded servers, the demo, the audit client, the webhook receiver."""
