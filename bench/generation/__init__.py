"""The AR engine: a policy's plan per chunk, the KV reservoir it reads, the planned attention on the Wan DiT."""
