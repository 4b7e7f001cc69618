"""The Telegram front end (python-telegram-bot), one concern a module: `app` wiring, `handlers`, `chat`
(mentions, keyboards, typing), `render` (HTML), `state` (rate limits, answers behind buttons),
`limits` (flood limits and retries), `redact` (secrets out of logs). Only this package imports
`telegram`; `state`, `render` and `redact` do not, so the HTTP API can share the rate limiter."""
