"""Local stand-ins for real destination APIs. Each app enforces its provider's contract (auth, payload
shape, batch limits, rate limits, per-row errors, idempotency) and keeps what it received for assertions."""
