"""Peer-to-peer connections over UDP (weeks 4-7): hole punching, relay fallback, a reliable
channel, chat and file transfer.

Modules (import them directly; this package imports none of them):
- packet     the datagram format peers send each other (header, PROBE, DATA, BYE, ...)
- states     session states, events and the one transition table
- punch      sans-I/O hole punching: probe schedule, txids, birthday mode
- heartbeat  sans-I/O keepalives and dead-path detection
- session    sans-I/O PeerSession: signaling, punching, heartbeats, relay fallback
- channel    sans-I/O ReliableChannel: an ordered byte stream over DATA bodies
- transfer   file-transfer records (offer, chunks, end with SHA-256)
- chat       chat records (text lines)
- relay      sans-I/O RelayCore: the signaling server's bounded UDP relay
- gather        host and server-reflexive candidates and the mapping behaviour (STUN)
- peer          the I/O shell on the reactor: sockets, signaling, timers, records
- conversation  chat lines and files over one peer's channel
- command       `netsprint peer`
"""
