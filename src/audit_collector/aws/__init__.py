"""The AWS edge: the three Lambda handlers, their configuration and invocation payloads, and the template they deploy with."""
