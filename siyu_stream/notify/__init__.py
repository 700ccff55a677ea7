"""`siyu-stream notify`: delivers the action topics to WeCom robots and webhooks, on time,
once, and never in quiet hours (docs/notify.md)."""
