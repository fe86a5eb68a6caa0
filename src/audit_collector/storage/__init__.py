"""Where things are kept: the archive (S3 or a local folder) and the checkpoint store (DynamoDB or a
local file), each a port with two adapters, and the atomic file writes the local adapters share.

``keys`` says where everything lives in the bucket; nothing here decides what to fetch.
"""
