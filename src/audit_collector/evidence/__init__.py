"""What the collector leaves as proof: a manifest per closed window, chained by SHA-256, and signed
heads of that chain (with a KMS or Ed25519 key). ``verify`` checks them; this room only builds,
encodes and signs them.
"""
