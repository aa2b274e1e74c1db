"""A simulated Windows estate on loopback: WS-Management over HTTP with real NTLM, thousands of hosts."""
